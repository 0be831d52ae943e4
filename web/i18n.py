"""Chinese and English for the web pages: a small message catalog, no compile step.

The locale of a request is, in order: ``?lang=zh|en`` (remembered in a cookie),
the ``lang`` cookie, the signed-in user's locale, the browser's
Accept-Language, the installation's default (settings). Labels written in the
definitions are shown as written: ``label`` in Chinese, ``label_en`` (falling
back to ``label``) in English.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

LOCALES = ("zh", "en")
COOKIE = "lang"

CATALOG: dict[str, tuple[str, str]] = {
    "app_name": ("promoflow 促销流程", "promoflow"),
    "home": ("首页", "Home"),
    "login": ("登录", "Sign in"),
    "logout": ("退出", "Sign out"),
    "username": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "login_failed": ("用户名或密码错误", "Wrong user name or password"),
    "login_required": ("请先登录", "Please sign in first"),
    "logged_out": ("已退出", "You are signed out"),
    "forms_i_can_fill": ("我可以填写的表单", "Forms I can fill in"),
    "no_forms": ("暂无可填写的表单", "No forms for you yet"),
    "my_recent_records": ("我最近的记录", "My recent records"),
    "no_records": ("暂无记录", "No records"),
    "fill": ("填写", "Fill in"),
    "records": ("记录", "Records"),
    "submit": ("提交", "Submit"),
    "save": ("保存", "Save"),
    "add_row": ("添加一行", "Add row"),
    "remove_row": ("删除", "Remove"),
    "required_mark": ("必填", "required"),
    "fix_errors": ("提交失败，请修改标出的字段", "Not submitted: please fix the marked fields"),
    "submitted": ("已提交，记录编号 {id}", "Submitted: record {id}"),
    "updated": ("已保存", "Saved"),
    "record": ("记录", "Record"),
    "record_n": ("记录 #{id}", "Record #{id}"),
    "created_by": ("提交人", "Submitted by"),
    "created_at": ("提交时间", "Submitted at"),
    "updated_at": ("更新时间", "Updated at"),
    "status": ("状态", "Status"),
    "version": ("版本", "Version"),
    "form_version": ("表单版本", "Form version"),
    "filter": ("筛选", "Filter"),
    "clear": ("清除", "Clear"),
    "sort": ("排序", "Sort"),
    "newest_first": ("最新在前", "Newest first"),
    "oldest_first": ("最早在前", "Oldest first"),
    "condition_json": ("高级条件 (JSON)", "Advanced condition (JSON)"),
    "only_mine": ("只看我的", "Only mine"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "total_n": ("共 {n} 条", "{n} in total"),
    "page_n_of": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "any": ("全部", "Any"),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "choose": ("请选择", "Choose"),
    "forbidden": ("没有权限", "Forbidden"),
    "forbidden_text": ("您没有执行此操作的权限。", "You are not allowed to do this."),
    "not_found": ("未找到", "Not found"),
    "not_found_text": ("页面或记录不存在。", "No such page or record."),
    "bad_request": ("请求无效", "Bad request"),
    "csrf_failed": ("表单已过期或缺少安全令牌，请刷新页面后重试。",
                    "The form expired or lacks its security token; reload the page and try again."),
    "too_large": ("提交的内容过大", "The submission is too large"),
    "conflict": ("记录已被他人修改，请刷新后重试", "Someone else changed the record; reload and try again"),
    "bad_condition": ("筛选条件无效：{error}", "Invalid filter: {error}"),
    "language": ("语言", "Language"),
    "edit": ("编辑", "Edit"),
    "back": ("返回", "Back"),
    "file_kept": ("已上传：{name}", "Uploaded: {name}"),
    "server_error": ("服务器错误", "Server error"),
}


def get_locale() -> str:
    """The locale of the current request ("zh" or "en"), decided once per request."""
    cached = g.get("_locale")
    if cached:
        return str(cached)
    locale = _choose()
    g._locale = locale
    return locale


def _choose() -> str:
    asked = request.args.get("lang")
    if asked in LOCALES:
        return asked
    cookie = request.cookies.get(COOKIE)
    if cookie in LOCALES:
        return cookie
    user = g.get("user")
    if user is not None and user.locale:
        return normalize(user.locale)
    best = request.accept_languages.best_match(["zh", "zh-CN", "en"]) if request.accept_languages else None
    if best:
        return normalize(best)
    default = current_app.extensions["promoflow"].settings.locale
    return normalize(default)


def normalize(locale: str | None) -> str:
    """"zh-CN" → "zh", "en_US" → "en"; anything else → "zh"."""
    text = (locale or "").lower()
    return "en" if text.startswith("en") else "zh"


def t(key: str, **params: Any) -> str:
    """The catalog message ``key`` in the request's locale, filled with ``params``."""
    pair = CATALOG.get(key)
    if pair is None:
        return key
    text = pair[1 if get_locale() == "en" else 0]
    return text.format(**params) if params else text


def label(obj: Any, attr: str = "label") -> str:
    """A definition's label in the request's locale: ``label_en`` in English when
    written, else ``label`` as written (``attr="title"`` for form titles)."""
    base = getattr(obj, attr, None) or ""
    if get_locale() == "en":
        english = getattr(obj, f"{attr}_en", None)
        if english:
            return str(english)
    return str(base)


def remember_locale(response: Any) -> Any:
    """After-request hook: keep a ``?lang=`` choice in a cookie for a year."""
    asked = request.args.get("lang")
    if asked in LOCALES and request.cookies.get(COOKIE) != asked:
        response.set_cookie(COOKIE, asked, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
