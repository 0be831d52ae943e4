"""Commands about automation rules: ``rules list|preview|run`` and ``journeys show``."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from web.cli import Context, main, pass_ctx, utc_now


def parse_at(value: str | None) -> datetime:
    """A ``--at`` timestamp (ISO; a naive one is in the settings' zone) as aware UTC, or now."""
    if not value:
        return utc_now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"`{value}` is not a timestamp like 2026-03-01T10:00 or 2026-03-01 10:00+08:00",
                                 param_hint="--at") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(_ctx_timezone()))
    return moment.astimezone(UTC)


def _ctx_timezone() -> str:
    obj = click.get_current_context().find_object(Context)
    return obj.settings.timezone if obj is not None else "Asia/Shanghai"


class _Automation:
    """The published definitions and the automation policy, for one command."""

    def __init__(self, obj: Context):
        from engine.automation.configure import policy_from_settings
        from engine.registry import DefinitionRegistry

        self.session_factory = obj.session_factory()
        self.registry = DefinitionRegistry(self.session_factory)
        self.definitions = self.registry.current()
        if not self.definitions.rules:
            raise click.ClickException("no rules are published: run `promoflow publish` first")
        try:
            self.policy = policy_from_settings(self.definitions, obj.settings, self.registry)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None

    def rule(self, rule_id: str):
        from engine.definitions.errors import unknown

        rule = self.definitions.rules.get(rule_id)
        if rule is None:
            raise click.ClickException(unknown("rule", rule_id, self.definitions.rules))
        return rule


def _local(value: datetime | None, tz: str) -> str:
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


@main.group()
def rules() -> None:
    """Automation rules: list, preview, run."""


@rules.command("list")
@click.option("--at", "at", default=None, help="As if at this time (ISO; default: now).")
@pass_ctx
def rules_list(obj: Context, at: str | None) -> None:
    """Every published rule: trigger, next run, the last 30 days' activity per day."""
    from engine.automation.overview import describe_trigger, next_run, recent_activity

    auto = _Automation(obj)
    tz = obj.settings.timezone
    now = parse_at(at)
    with auto.session_factory() as session:
        for rule in sorted(auto.definitions.rules.values(), key=lambda r: r.id):
            version = auto.registry.version_of("rule", rule.id)
            state = "" if rule.enabled else "  [disabled]"
            click.echo(f"{rule.id} v{version}  {rule.title}{state}")
            click.echo(f"  trigger:  {describe_trigger(rule, 'en')}")
            click.echo(f"  next run: {_local(next_run(rule, now), tz)}")
            activity = recent_activity(session, rule.id, now=now, tz=tz)
            if not activity:
                click.echo("  last runs: none")
            for act in activity:
                c = act.counters
                click.echo(f"  {act.day}  runs {act.runs}  entered {c['entered']}  sent {c['sent']}  "
                           f"skipped: consent {c['skipped_consent']} caps {c['skipped_cap']}  "
                           f"deferred: quiet hours {c['deferred_quiet']} caps {c['deferred_cap']}")


@rules.command("preview")
@click.argument("rule_id")
@click.option("--days", default=7, show_default=True, type=click.IntRange(0, 90), help="Days to forecast.")
@click.option("--at", "at", default=None, help="Start the simulated clock at this time (default: now).")
@click.option("--sms-price", type=float, default=None,
              help="CNY per SMS for the cost column (default: settings sms_price, 0.045).")
@pass_ctx
def rules_preview(obj: Context, rule_id: str, days: int, at: str | None, sms_price: float | None) -> None:
    """Audience count and sample of RULE_ID, and what it would send each day
    over the next days (simulated clock, per channel, SMS cost). Nothing is written."""
    from engine.automation.preview import preview_rule

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    now = parse_at(at)
    price = sms_price if sms_price is not None else obj.settings.sms_price
    result = preview_rule(auto.session_factory, rule.id, now=now, definitions=auto.definitions, days=days,
                          policy=auto.policy, sms_price=price)
    click.echo(f"{rule.id}  {rule.title}")
    click.echo(f"Audience now: {result.audience_count} customer(s)")
    for row in result.sample:
        click.echo(f"  #{row['id']:<8} {row['name'] or '-':<12} {row['phone'] or '-':<14} {row['email'] or '-':<28} "
                   f"{row['city'] or '-'}")
    if result.event_triggered:
        click.echo("Triggered by events: no forecast (it runs when the events arrive).")
        return
    channels = result.channels
    header = f"{'DAY':<11} {'ENTERED':>8} " + " ".join(f"{c.upper():>7}" for c in channels) + \
        f" {'COUPONS':>8} {'SMS COST':>9}"
    click.echo(f"Forecast, {days} day(s) from {_local(now, rule.timezone)} ({rule.timezone}); nothing was written:")
    click.echo(header)
    for day in result.days:
        cells = " ".join(f"{day.messages.get(c, 0):>7}" for c in channels)
        click.echo(f"{day.day.isoformat():<11} {day.entered:>8} {cells} {day.coupons:>8} {day.sms_cost:>9}")
    click.echo(f"Total: {result.total_messages} message(s), SMS cost {result.total_sms_cost} CNY "
               f"at {result.sms_price} CNY per SMS.")


@rules.command("run")
@click.argument("rule_id")
@click.option("--at", "at", default=None, help="Run as if at this time (ISO; default: now).")
@pass_ctx
def rules_run(obj: Context, rule_id: str, at: str | None) -> None:
    """Run RULE_ID once now (or as if at --at): enter its audience, then
    advance its due journeys. Running it again in the same period enters nobody."""
    from engine.automation.runner import run_rule
    from engine.automation.versions import StoredRules, rule_lookup

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    now = parse_at(at)
    try:
        # Journeys pinned to an older version of the rule advance on that version's spec.
        report = run_rule(auto.session_factory, rule.id, now=now, definitions=auto.definitions, policy=auto.policy,
                          rule_of=rule_lookup(auto.definitions, auto.policy, StoredRules(auto.session_factory)))
    except TypeError as exc:
        raise click.ClickException(str(exc)) from None
    c = report.counters
    click.echo(f"{rule.id} at {_local(now, rule.timezone)}: entered {report.entered}, advanced {c.advanced}, "
               f"sent {c.sent}, skipped (consent {c.skipped_consent}, caps {c.skipped_cap}, other {c.skipped_other}), "
               f"deferred (quiet hours {c.deferred_quiet}, caps {c.deferred_cap}), completed {c.completed}, "
               f"exited {c.exited}, errors {c.errors}.")
    if report.sql_fallback:
        click.echo(f"First steps ran journey by journey, not as SQL: {report.sql_fallback}.")


@main.group()
def journeys() -> None:
    """Subjects in rules' journeys."""


@journeys.command("show")
@click.argument("rule_id")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(0, 1000), help="Sample size.")
@pass_ctx
def journeys_show(obj: Context, rule_id: str, limit: int) -> None:
    """Counts of RULE_ID's journeys by version, step and status, and the latest ones."""
    from engine.automation.overview import journey_counts, journey_sample

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    tz = obj.settings.timezone
    with auto.session_factory() as session:
        counts = journey_counts(session, rule.id)
        sample = journey_sample(session, rule.id, limit)
    if not counts:
        click.echo(f"{rule.id}: no journeys yet.")
        return
    click.echo(f"{rule.id}: {sum(n for *_, n in counts)} journey(s)")
    click.echo(f"{'VERSION':>7}  {'STEP':<24} {'STATUS':<10} {'COUNT':>8}")
    for version, step, status, n in counts:
        click.echo(f"{version:>7}  {step or '-':<24} {status:<10} {n:>8}")
    click.echo(f"Latest {len(sample)}:")
    for j in sample:
        click.echo(f"  #{j['id']:<8} {j['subject_type']} {j['subject_id']:<8} v{j['rule_version']} "
                   f"{j['step_id'] or '-':<20} {j['status']:<9} due {_local(j['due_at'], tz)}  "
                   f"entered {_local(j['entered_at'], tz)}")
