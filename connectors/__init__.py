"""Channel adapters behind the engine's Connector port (``engine.ports``).

Find and build one with :func:`connectors.registry.load_connector`; each
provider lives in its own module (aliyun_sms, tencent_sms, twilio, smtp, wecom,
webhook, memory, log). Nothing here is imported by the engine.
"""
