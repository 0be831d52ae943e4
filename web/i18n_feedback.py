"""Chinese and English for the survey pages and the feedback list (web/feedback.py); merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    # public survey page
    "survey_invalid_title": ("链接无效", "Invalid link"),
    "survey_invalid_text": ("这个问卷链接不完整或已被修改，请使用消息中的原始链接。",
                            "This survey link is incomplete or has been altered. Please use the link from your message."),
    "survey_expired_title": ("链接已过期", "Link expired"),
    "survey_expired_text": ("这个问卷链接已过期，感谢您的关注。", "This survey link has expired. Thank you for your interest."),
    "survey_unavailable_title": ("问卷暂不可用", "Survey unavailable"),
    "survey_unavailable_text": ("这份问卷目前不可用。", "This survey is not available at the moment."),
    "survey_answered_title": ("您已提交过", "Already answered"),
    "survey_answered_text": ("您已经回答过这份问卷，每次活动只记录一份答卷。感谢您的反馈！",
                             "You have already answered this survey; one answer per campaign is recorded. Thank you!"),
    "survey_thanks_title": ("感谢您的反馈", "Thank you"),
    "survey_thanks_text": ("您的意见已收到，我们会认真查看。", "We received your answer and will read it carefully."),
    "survey_privacy": ("您的回答仅用于改进我们的服务。", "Your answer is used only to improve our service."),
    # staff list
    "feedback_nav": ("反馈", "Feedback"),
    "feedback_title": ("客户反馈", "Customer feedback"),
    "feedback_campaign": ("活动", "Campaign"),
    "feedback_tag": ("标签", "Tags"),
    "feedback_all": ("全部", "All"),
    "feedback_min_score": ("最低分", "Min score"),
    "feedback_max_score": ("最高分", "Max score"),
    "feedback_filter": ("筛选", "Filter"),
    "feedback_nps": ("NPS {score}（{n} 份答卷：推荐 {promoters}，中立 {passives}，贬损 {detractors}）",
                     "NPS {score} ({n} answers: {promoters} promoters, {passives} passives, {detractors} detractors)"),
    "feedback_nps_none": ("暂无评分", "No scores yet"),
    "feedback_small_sample": ("样本少于 30，仅供参考", "fewer than 30 answers: indicative only"),
    "feedback_received": ("时间", "Received"),
    "feedback_customer": ("客户", "Customer"),
    "feedback_score": ("评分", "Score"),
    "feedback_comment": ("内容", "Comment"),
    "feedback_source": ("来源", "Source"),
    "feedback_none": ("没有符合条件的反馈", "No feedback matches"),
}
