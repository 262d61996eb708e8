"""`triton://` backend addresses: where a remote Triton server is and which components it runs.

    triton://HOST:PORT            HTTP/REST (default port 8000)
    triton+http://HOST:PORT       the same, spelled out
    triton+grpc://HOST:PORT       gRPC (default port 8001)
    ...?components=image_encoder,fusion   only these components on the server, the others in-process

A `TritonBackend` stands where a `fusionrt.runtime.Backend` member does (`Backend.parse` returns it
for these addresses): `value` is the address, it runs the bundle's variants, pins no ORT provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fusionrt.errors import ConfigError

SCHEMES = {"triton": "http", "triton+http": "http", "triton+grpc": "grpc"}
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
GRAMMAR = "triton://HOST:PORT (HTTP), triton+grpc://HOST:PORT (gRPC), optionally ?components=NAME,NAME"


@dataclass(frozen=True)
class TritonBackend:
    protocol: str  # "http" or "grpc"
    host: str
    port: int
    components: tuple[str, ...] | None = None  # None: every component runs on the server

    is_ort = False
    providers = None
    runs_variants = True  # the server serves the bundle's variants (the repository records which)

    @property
    def value(self) -> str:
        scheme = "triton" if self.protocol == "http" else "triton+grpc"
        query = f"?components={','.join(self.components)}" if self.components else ""
        return f"{scheme}://{self.url}{query}"

    @property
    def url(self) -> str:
        """HOST:PORT, as tritonclient takes it ([v6]:PORT for an IPv6 host)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def gpu_target(self, providers=None) -> None:
        """No GPU target: variants are chosen as on a CPU, as `fusionrt triton-export --variant auto` chose them."""
        return None

    def serves(self, component: str) -> bool:
        return self.components is None or component in self.components


def is_address(value: object) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0] in SCHEMES and "://" in value


def parse_address(text: str) -> TritonBackend:
    """A `TritonBackend` from its address; ConfigError that quotes the grammar otherwise."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"Triton address {text!r:.80}: {e}; expected {GRAMMAR}") from None
    if parts.scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"Triton address {text!r:.80}; expected {GRAMMAR}")
    protocol = SCHEMES[parts.scheme]
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"components"})
    if unknown:
        raise ConfigError(f"Triton address {text!r:.80}: unknown option {unknown[0]!r}; expected {GRAMMAR}")
    components = None
    if "components" in query:
        components = tuple(n.strip() for v in query["components"] for n in v.split(",") if n.strip())
        if not components:
            raise ConfigError(f"Triton address {text!r:.80}: ?components= names no component; expected {GRAMMAR}")
    return TritonBackend(protocol, parts.hostname, port or DEFAULT_PORTS[protocol], components)
