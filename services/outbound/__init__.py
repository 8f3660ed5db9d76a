"""Outbound HTTP under one destination policy: what finsent may connect to, and how.

`policy` is pure (which addresses and names are allowed, FINSENT_OUTBOUND_ALLOW); `client`
is the I/O: one request, resolved and checked at connect time, under a whole-request deadline.
Webhook and Slack deliveries and feed fetches all go through it.
"""

from services.outbound.client import (
    ConnectFailed,
    DeadlineExceeded,
    OutboundError,
    RedirectRefused,
    Response,
    ResponseTooLarge,
    request,
)
from services.outbound.policy import DestinationDenied, OutboundPolicy, address_class

__all__ = [
    "ConnectFailed",
    "DeadlineExceeded",
    "DestinationDenied",
    "OutboundError",
    "OutboundPolicy",
    "RedirectRefused",
    "Response",
    "ResponseTooLarge",
    "address_class",
    "request",
]
