"""Commands for people and their API tokens: ``users …`` and ``tokens …``."""

from __future__ import annotations

import click

from web.cli import Context, main, pass_ctx, utc_now


def _accounts(obj: Context):
    from engine.accounts import AccountService
    from engine.passwords import PasswordPolicy

    return AccountService(obj.session_factory(), policy=PasswordPolicy(min_length=obj.settings.password_min_length))


@main.group()
def users() -> None:
    """Accounts that sign in to the web app or call the API."""


@users.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="A role id (repeat for several); `admin` may do everything.")
@click.option("--password", default=None, help="The password (prompted for when left out).")
@click.option("--display-name", default=None, help="The name shown in the app.")
@click.option("--email", default=None)
@click.option("--manager", default=None, help="The user name of this user's manager.")
@click.option("--locale", type=click.Choice(["zh", "en"]), default=None, help="Language of the web pages.")
@pass_ctx
def users_add(obj: Context, name: str, roles: tuple[str, ...], password: str | None, display_name: str | None,
              email: str | None, manager: str | None, locale: str | None) -> None:
    """Create user NAME with roles from the published definitions (or admin)."""
    from engine.accounts import AccountError

    accounts = _accounts(obj)
    try:
        accounts.check_roles(roles)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if password is None:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password is empty")
    try:
        user = accounts.add_user(name, roles=roles, password=password, now=utc_now(), display_name=display_name,
                                 email=email, manager=manager, locale=locale, check_roles=False,
                                 check_password=True, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created user {user.username} (id {user.id}) with roles: {', '.join(sorted(user.roles)) or '-'}")


def _account_call(obj: Context, method: str, *args, **kwargs):
    """Call an AccountService method; an AccountError becomes a click error (exit 1, no traceback)."""
    from engine.accounts import AccountError

    try:
        return getattr(_accounts(obj), method)(*args, **kwargs)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("roles")
@click.argument("name")
@click.option("--role", "roles", multiple=True,
              help="A role id (repeat for several); replaces all of NAME's roles. None given: no roles.")
@pass_ctx
def users_roles(obj: Context, name: str, roles: tuple[str, ...]) -> None:
    """Set the roles of user NAME (the whole set) and print it."""
    user = _account_call(obj, "set_roles", name, roles, now=utc_now(), actor="cli")
    click.echo(f"{user.username} roles: {', '.join(sorted(user.roles)) or '-'}")


@users.command("manager")
@click.argument("name")
@click.argument("manager", required=False)
@click.option("--none", "clear", is_flag=True, help="Clear NAME's manager.")
@pass_ctx
def users_manager(obj: Context, name: str, manager: str | None, clear: bool) -> None:
    """Make MANAGER the manager of user NAME (or --none for nobody)."""
    if clear == (manager is not None):
        raise click.UsageError("give either MANAGER or --none")
    user = _account_call(obj, "set_manager", name, None if clear else manager, now=utc_now(), actor="cli")
    click.echo(f"{user.username} manager: {user.manager or '-'}")


@users.command("store")
@click.argument("name")
@click.argument("store", required=False)
@click.option("--none", "clear", is_flag=True, help="NAME works at no particular store.")
@pass_ctx
def users_store(obj: Context, name: str, store: str | None, clear: bool) -> None:
    """Assign user NAME to STORE (the code customers carry as attribute `store`),
    so role-addressed follow-up tasks about its customers reach NAME."""
    if clear == (store is not None):
        raise click.UsageError("give either STORE or --none")
    user = _account_call(obj, "set_store", name, None if clear else store, now=utc_now(), actor="cli")
    click.echo(f"{user.username} store: {store if not clear else '-'}")


@users.command("deactivate")
@click.argument("name")
@pass_ctx
def users_deactivate(obj: Context, name: str) -> None:
    """Stop user NAME signing in, using API tokens and getting new tasks."""
    user = _account_call(obj, "deactivate", name, now=utc_now(), actor="cli")
    click.echo(f"{user.username} is inactive (open tasks already assigned stay with them)")


@users.command("activate")
@click.argument("name")
@pass_ctx
def users_activate(obj: Context, name: str) -> None:
    """Let a deactivated user NAME sign in and get tasks again."""
    user = _account_call(obj, "activate", name, now=utc_now(), actor="cli")
    click.echo(f"{user.username} is active")


@users.command("list")
@pass_ctx
def users_list(obj: Context) -> None:
    """Every user: name, roles, manager, active."""
    found = _account_call(obj, "list_users")
    if not found:
        click.echo("No users.")
        return
    rows = [(u.username, ",".join(sorted(u.roles)) or "-", u.manager or "-", "yes" if u.active else "no")
            for u in found]
    header = ("NAME", "ROLES", "MANAGER", "ACTIVE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for r in [header, *rows]:
        click.echo("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


@users.command("password")
@click.argument("name")
@pass_ctx
def users_password(obj: Context, name: str) -> None:
    """Set a new password for user NAME (prompted twice, hidden; the password policy applies).

    For the operator of the installation, who has the database anyway, so the
    current password is not asked (people change their own on the web page).
    Every session of NAME ends and a lock-out of NAME is lifted."""
    if name not in {u.username for u in _account_call(obj, "list_users")}:
        raise click.ClickException(f"unknown user `{name}`")  # before asking for a password
    password = click.prompt(f"New password for {name}", hide_input=True, confirmation_prompt=True)
    _account_call(obj, "set_password", name, password, now=utc_now(), actor="cli")
    click.echo(f"Password of {name} changed; every session of {name} has ended.")


@users.command("reset-password")
@click.argument("name")
@pass_ctx
def users_reset_password(obj: Context, name: str) -> None:
    """Reset the password of user NAME (an administrator's action) and print a
    one-time password: it signs in once, then NAME must choose a new password.
    Every session of NAME ends and a lock-out of NAME is lifted."""
    password = _account_call(obj, "reset_password", name, now=utc_now(), actor="cli")
    click.echo(password)
    click.echo(f"One-time password for {name}; hand it over privately. {name} must choose a new password "
               "at the next sign-in.", err=True)


@main.group()
def tokens() -> None:
    """API tokens (``Authorization: Bearer <token>``)."""


@tokens.command("create")
@click.argument("user")
@click.option("--name", "label", default="api", show_default=True, help="A label to tell tokens apart.")
@pass_ctx
def tokens_create(obj: Context, user: str, label: str) -> None:
    """Create an API token for USER and print it: it is shown only this once."""
    from engine.accounts import AccountError

    try:
        token = _accounts(obj).create_token(user, now=utc_now(), name=label, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"Token `{label}` for {user}; store it now, it cannot be shown again.", err=True)


@tokens.command("revoke")
@click.argument("user")
@click.option("--name", "label", default=None, help="Only tokens with this label (default: all).")
@pass_ctx
def tokens_revoke(obj: Context, user: str, label: str | None) -> None:
    """Revoke USER's API tokens."""
    from engine.accounts import AccountError

    try:
        count = _accounts(obj).revoke_tokens(user, now=utc_now(), name=label, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Revoked {count} token(s) of {user}.")
