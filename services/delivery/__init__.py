"""Alert subscriptions and reliable delivery (webhook, Slack, e-mail, log).

Pure logic (matching, validation, retry policy, rendering, signatures) lives in
`subscriptions`, `backoff` and `render`; `repository` is the data access, `channels/` the
senders, `dispatcher` the loop that ties them together (`finsent dispatcher`) and `trial`
the one test send (`finsent subscriptions test` and the dashboard's "Send test"). The backoff
schedule is the one every service shares, `services.retry`.
"""

from services.delivery.backoff import after_attempt, classify_http_status
from services.delivery.model import CHANNELS, Message, Notification, Subscription
from services.delivery.subscriptions import SubscriptionError, build_subscription, matches, parse_key

__all__ = [
    "CHANNELS",
    "Message",
    "Notification",
    "Subscription",
    "SubscriptionError",
    "after_attempt",
    "build_subscription",
    "classify_http_status",
    "matches",
    "parse_key",
]
