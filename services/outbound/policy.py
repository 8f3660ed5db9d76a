"""Which outbound destinations finsent may connect to (pure: no I/O, no DNS).

Anything a user can type (a webhook or Slack URL, a feed URL) makes a finsent host open a
connection. Left open, that turns the dashboard host into a proxy into the operator's own
network: loopback admin ports, cloud metadata at 169.254.169.254, databases on private
addresses. So the default is: public unicast addresses only. Everything else
(loopback, private, shared/CGNAT, link-local, multicast, reserved, unspecified) is refused
unless the operator allows it in FINSENT_OUTBOUND_ALLOW, a comma-separated list of
networks (`10.1.0.0/16`, `127.0.0.1`) and host names (`hooks.internal`, or `.internal`
for every name under it).

An allowed network allows addresses; an allowed host name allows that name whatever it
resolves to (the operator vouches for the name and its DNS). Every other name is checked
by the addresses it resolves to at connect time (services.outbound.client), so a name that
resolves to a public address when a subscription is saved and to 127.0.0.1 when it is used
(DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationDenied(ValueError):
    """The destination is not allowed; the message names the host class, never the URL's path."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What the operator allows beyond public addresses; the empty policy allows only those."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()  # lower case; a leading dot allows every name under it

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> OutboundPolicy:
        """From FINSENT_OUTBOUND_ALLOW's text; `ValueError` naming the entry that is neither."""
        entries = text.split(",") if isinstance(text, str) else list(text)
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.removeprefix(".")
            labels = name.split(".")
            if not name or not all(label and _is_label(label) for label in labels) or "/" in entry:
                raise ValueError(
                    f"outbound allow entry {raw.strip()!r} is neither a network (10.0.0.0/8, 127.0.0.1) "
                    "nor a host name (hooks.internal, .internal)"
                )
            hosts.append(entry)
        return cls(tuple(networks), tuple(hosts))

    def allows_host(self, host: str) -> bool:
        """Is `host` (a name, not an address) allowed by name, whatever it resolves to?"""
        name = host.lower().rstrip(".")
        return any(name == h or (h.startswith(".") and name.endswith(h)) for h in self.hosts)

    def address_denial(self, address: str | IPAddress) -> str | None:
        """None if a connection to `address` is allowed, else the class of address refused."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return self.address_denial(embedded)
        kind = address_class(ip)
        return None if kind == "public" else kind

    def check_address(self, address: str | IPAddress) -> None:
        kind = self.address_denial(address)
        if kind is not None:
            raise DestinationDenied(f"destination refused: a {kind} address {NOT_ALLOWED}")

    def check_url(self, url: str) -> None:
        """What can be decided without DNS: the scheme, and a host that is an address
        (or an allowed name). A name is checked again, by address, on every connect."""
        parts = urlsplit(url)
        if parts.scheme not in ALLOWED_SCHEMES or not parts.hostname:
            raise DestinationDenied("destination refused: only http:// and https:// URLs with a host")
        host = parts.hostname
        if self.allows_host(host):
            return
        address = parse_address(host)
        if address is not None:
            self.check_address(address)
        elif host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
            raise DestinationDenied(f"destination refused: a loopback address {NOT_ALLOWED}")


NOT_ALLOWED = "is not allowed (the operator can allow it in FINSENT_OUTBOUND_ALLOW)"


def address_class(ip: IPAddress) -> str:
    """`public`, or why not: the first of the classes an outbound connection must not reach."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # shared address space (100.64.0.0/10), benchmarking, documentation ...
        return "non-public"
    return "public"


def parse_address(host: str) -> IPAddress | None:
    """`host` as an IP address (brackets and an IPv6 zone removed), or None for a name."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and a stack would reach (mapped, NAT64, 6to4)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _is_label(label: str) -> bool:
    return len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) and not label.startswith("-")
