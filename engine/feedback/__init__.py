"""Feedback in (issue 7): survey answers, survey-tool webhooks, WeCom replies
and pulled survey results, stored once with their customer, campaign and
message, tagged by keyword rules, emitting ``feedback.received``.

``links`` signs survey links, ``tagging`` matches keyword rules, ``service``
stores, ``pull`` drives pull connectors, ``nps`` scores campaigns.
"""
