"""Chinese and English for short links, the sandbox inbox and connector
warnings (web/clicks.py, web/sandbox.py, the /messages banner); merged into
:data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "click_missing_title": ("链接无效", "Link not found"),
    "click_missing_text": ("这个链接不存在或已失效，请检查短信或邮件中的链接是否完整。",
                           "This link does not exist or is no longer valid. Please check that the link in your "
                           "message is complete."),
    "conn_problem": ("连接器「{name}」({id}) 无法发送：{reason}。{n} 条消息正在排队等待它。",
                     "Connector “{name}” ({id}) cannot deliver: {reason}. {n} message(s) are waiting for it."),
    "conn_fix_missing_secret": ("请在运行 promoflow worker 的环境中设置该环境变量，然后重启 worker。",
                                "Set the environment variable where promoflow worker runs, then restart the worker."),
    "conn_fix_other": ("请检查该连接器的配置（config/connectors），重新发布后重启 worker。",
                       "Check the connector's configuration (config/connectors), publish again and restart the worker."),
    "sandbox_nav": ("沙箱收件箱", "Sandbox"),
    "sandbox_title": ("沙箱收件箱", "Sandbox inbox"),
    "sandbox_on": ("演示模式：所有短信、邮件和企业微信消息都投递到这里，而不是真实的服务商。点击消息中的链接，就像客户一样。",
                   "Demo mode: every SMS, e-mail and WeCom message is delivered here instead of to a provider. "
                   "Click a link in a message as a customer would."),
    "sandbox_off": ("沙箱未开启：只有类型为 sandbox 的连接器投递到这里。",
                    "The sandbox is off: only connectors of type sandbox deliver here."),
    "sandbox_channel_sms": ("短信", "SMS"),
    "sandbox_channel_email": ("邮件", "E-mail"),
    "sandbox_channel_wecom": ("企业微信", "WeCom"),
    "sandbox_empty": ("还没有消息", "No messages yet"),
    "sandbox_latest": ("只显示最新的 {n} 条", "Showing the latest {n}"),
    "msg_click_link": ("短链接", "Short link"),
    "msg_clicks": ("点击 {n} 次", "{n} click(s)"),
    "msg_first_click": ("首次点击", "first click"),
}
