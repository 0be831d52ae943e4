"""Chinese and English for sign-in lock-outs and the change-password page
(web/auth.py); merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "login_locked": ("登录失败次数过多，请在 {wait} 后重试。", "Too many failed sign-ins. Try again in {wait}."),
    "wait_seconds": ("{n} 秒", "{n} s"),
    "wait_minutes": ("{n} 分钟", "{n} min"),
    "session_expired": ("登录已过期，请重新登录", "Your sign-in has expired; please sign in again"),
    "pw_title": ("修改密码", "Change password"),
    "pw_nav": ("修改密码", "Password"),
    "pw_current": ("当前密码", "Current password"),
    "pw_new": ("新密码", "New password"),
    "pw_confirm": ("确认新密码", "Confirm new password"),
    "pw_submit": ("保存新密码", "Save new password"),
    "pw_rules": ("至少 {n} 个字符；不能是常见密码，也不能包含用户名。修改后，其他设备上的登录将全部失效。",
                 "At least {n} characters; not a common password and not containing your user name. "
                 "Changing it signs you out everywhere else."),
    "pw_must_change": ("管理员已重置您的密码，请先设置新密码。", "An administrator reset your password; choose a new one first."),
    "pw_changed": ("密码已修改，其他设备上的登录已失效。", "Password changed; every other sign-in has ended."),
    "pw_wrong_current": ("当前密码不正确", "The current password is wrong"),
    "pw_mismatch": ("两次输入的新密码不一致", "The two new passwords differ"),
    "pw_required": ("必填", "Required"),
    "pw_too_short": ("密码至少需要 {n} 个字符", "The password needs at least {n} characters"),
    "pw_too_long": ("密码太长", "The password is too long"),
    "pw_common": ("这是常见密码，容易被猜到，请换一个", "This is a common password and easy to guess; choose another"),
    "pw_contains_username": ("密码不能包含用户名", "The password must not contain the user name"),
    "pw_unchanged": ("新密码不能与当前密码相同", "The new password must differ from the current one"),
}
