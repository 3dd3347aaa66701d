"""The server side of NTLMSSP with NTLMv2 (MS-NLMP).

Sans-IO: :class:`NtlmServer` turns the client's NEGOTIATE and AUTHENTICATE
messages into a CHALLENGE and, once the caller has looked up the user's NT
hash, into a verified session key.  Only NTLMv2 with extended session
security is accepted; LM and NTLMv1 are refused because they are breakable.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass, field

SIGNATURE = b"NTLMSSP\x00"
NEGOTIATE_MESSAGE = 1
CHALLENGE_MESSAGE = 2
AUTHENTICATE_MESSAGE = 3


class NegotiateFlags(enum.IntFlag):
    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    SIGN = 0x00000010
    SEAL = 0x00000020
    LM_KEY = 0x00000080
    NTLM = 0x00000200
    ANONYMOUS = 0x00000800
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    EXTENDED_SESSIONSECURITY = 0x00080000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    N128 = 0x20000000
    KEY_EXCH = 0x40000000
    N56 = 0x80000000


class AvId(enum.IntEnum):
    EOL = 0
    NB_COMPUTER_NAME = 1
    NB_DOMAIN_NAME = 2
    DNS_COMPUTER_NAME = 3
    DNS_DOMAIN_NAME = 4
    DNS_TREE_NAME = 5
    FLAGS = 6
    TIMESTAMP = 7
    SINGLE_HOST = 8
    TARGET_NAME = 9
    CHANNEL_BINDINGS = 10


MIC_PRESENT = 0x00000002  # in MsvAvFlags
# Windows 10 / Server 2019, NTLM revision 15: what the VERSION field says about us.
SERVER_VERSION = bytes([10, 0]) + struct.pack("<H", 17763) + b"\x00\x00\x00\x0f"


class NtlmError(ValueError):
    """A malformed NTLMSSP message."""


class AuthenticationFailed(Exception):
    """The response does not prove knowledge of the user's password."""


def _field(data: bytes, offset: int) -> bytes:
    """One (Len, MaxLen, Offset) payload field, bounds-checked."""
    if offset + 8 > len(data):
        raise NtlmError("message too short for its fields")
    length, _, start = struct.unpack_from("<HHI", data, offset)
    if length == 0:
        return b""
    if start + length > len(data) or start < offset + 8:
        raise NtlmError("a field points outside the message")
    return data[start:start + length]


def parse_av_pairs(data: bytes) -> list[tuple[int, bytes]]:
    pairs: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        if pos + 4 > len(data):
            raise NtlmError("AV pairs without MsvAvEOL")
        av_id, length = struct.unpack_from("<HH", data, pos)
        pos += 4
        if av_id == AvId.EOL:
            return pairs
        if pos + length > len(data):
            raise NtlmError("AV pair runs past its buffer")
        pairs.append((av_id, data[pos:pos + length]))
        pos += length


def pack_av_pairs(pairs: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(struct.pack("<HH", av_id, len(v)) + v for av_id, v in pairs)
    return out + struct.pack("<HH", AvId.EOL, 0)


@dataclass(frozen=True)
class Authenticate:
    lm_response: bytes
    nt_response: bytes
    domain: str
    user: str
    workstation: str
    encrypted_session_key: bytes
    flags: int
    mic: bytes | None
    raw: bytes

    @property
    def is_anonymous(self) -> bool:
        return not self.user and not self.nt_response and self.lm_response in (b"", b"\x00")


def _text(data: bytes, unicode: bool) -> str:
    try:
        return data.decode("utf-16-le") if unicode else data.decode("ascii")
    except UnicodeDecodeError:
        raise NtlmError("a name is not valid text") from None


def message_type(data: bytes) -> int:
    if len(data) < 12 or data[:8] != SIGNATURE:
        raise NtlmError("not an NTLMSSP message")
    return int(struct.unpack_from("<I", data, 8)[0])


def parse_negotiate(data: bytes) -> int:
    """The client's NegotiateFlags."""
    if message_type(data) != NEGOTIATE_MESSAGE or len(data) < 16:
        raise NtlmError("not an NTLMSSP NEGOTIATE message")
    return int(struct.unpack_from("<I", data, 12)[0])


def parse_authenticate(data: bytes) -> Authenticate:
    if message_type(data) != AUTHENTICATE_MESSAGE or len(data) < 64:
        raise NtlmError("not an NTLMSSP AUTHENTICATE message")
    flags = struct.unpack_from("<I", data, 60)[0]
    unicode = bool(flags & NegotiateFlags.UNICODE)
    nt = _field(data, 20)
    mic = None
    # The MIC sits after Version only when the NT response's AV pairs announce it.
    # AV pairs that do not parse make the message malformed (INVALID_PARAMETER,
    # as Samba answers since its bug 14932), whatever the password.
    if len(nt) > 16 + 28:
        pairs = dict(parse_av_pairs(nt[16 + 28:]))
        av_flags = pairs.get(AvId.FLAGS)
        if av_flags and len(av_flags) == 4 and struct.unpack("<I", av_flags)[0] & MIC_PRESENT:
            if len(data) < 88:
                raise NtlmError("MIC announced but missing")
            mic = data[72:88]
    return Authenticate(
        lm_response=_field(data, 12), nt_response=nt,
        domain=_text(_field(data, 28), unicode), user=_text(_field(data, 36), unicode),
        workstation=_text(_field(data, 44), unicode),
        encrypted_session_key=_field(data, 52), flags=flags, mic=mic, raw=data,
    )


def _hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4, which NTLM key exchange and MAC sealing still require (MS-NLMP 3.4.3)."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def ntowfv2(nt_hash: bytes, user: str, domain: str) -> bytes:
    return _hmac_md5(nt_hash, (user.upper() + domain).encode("utf-16-le"))


def _sign_key(session_key: bytes, direction: bytes) -> bytes:
    return hashlib.md5(session_key + b"session key to " + direction
                       + b" signing key magic constant\x00").digest()


def _seal_key(session_key: bytes, direction: bytes) -> bytes:
    return hashlib.md5(session_key + b"session key to " + direction
                       + b" sealing key magic constant\x00").digest()


def mac(session_key: bytes, direction: bytes, seq: int, message: bytes, key_exch: bool) -> bytes:
    """An NTLMSSP MESSAGE_SIGNATURE with extended session security (MS-NLMP 3.4.4.2).

    ``direction`` is b"client-to-server" or b"server-to-client".  Only the first
    message of each direction is ever signed here (the SPNEGO mechListMIC), so
    the RC4 sealing state starts fresh.
    """
    seq_bytes = struct.pack("<I", seq)
    checksum = _hmac_md5(_sign_key(session_key, direction), seq_bytes + message)[:8]
    if key_exch:
        checksum = rc4(_seal_key(session_key, direction), checksum)
    return struct.pack("<I", 1) + checksum + seq_bytes


@dataclass
class NtlmServer:
    """One NTLM exchange: negotiate -> challenge -> authenticate.

    ``server_challenge`` and ``timestamp`` come from the caller so the state
    machine stays deterministic (and testable with recorded messages).
    """

    server_challenge: bytes
    timestamp: int  # FILETIME
    netbios_name: str = "HANODE"
    netbios_domain: str = "WORKGROUP"
    dns_name: str = "hanode"
    negotiate_message: bytes = b""
    challenge_message: bytes = b""
    flags: int = 0
    authenticate: Authenticate | None = field(default=None, repr=False)
    session_key: bytes = field(default=b"", repr=False)

    def challenge(self, negotiate: bytes) -> bytes:
        client_flags = parse_negotiate(negotiate)
        self.negotiate_message = negotiate
        wanted = (NegotiateFlags.SIGN | NegotiateFlags.SEAL | NegotiateFlags.ALWAYS_SIGN
                  | NegotiateFlags.KEY_EXCH | NegotiateFlags.N128 | NegotiateFlags.N56)
        self.flags = (client_flags & wanted) | (
            NegotiateFlags.UNICODE | NegotiateFlags.NTLM | NegotiateFlags.REQUEST_TARGET
            | NegotiateFlags.TARGET_TYPE_SERVER | NegotiateFlags.EXTENDED_SESSIONSECURITY
            | NegotiateFlags.TARGET_INFO | NegotiateFlags.VERSION)
        target = self.netbios_name.encode("utf-16-le")
        info = pack_av_pairs([
            (AvId.NB_DOMAIN_NAME, self.netbios_domain.encode("utf-16-le")),
            (AvId.NB_COMPUTER_NAME, self.netbios_name.encode("utf-16-le")),
            (AvId.DNS_DOMAIN_NAME, b""),
            (AvId.DNS_COMPUTER_NAME, self.dns_name.encode("utf-16-le")),
            (AvId.TIMESTAMP, struct.pack("<Q", self.timestamp)),
        ])
        start = 56
        msg = (SIGNATURE + struct.pack("<I", CHALLENGE_MESSAGE)
               + struct.pack("<HHI", len(target), len(target), start)
               + struct.pack("<I", self.flags) + self.server_challenge + b"\x00" * 8
               + struct.pack("<HHI", len(info), len(info), start + len(target))
               + SERVER_VERSION + target + info)
        self.challenge_message = msg
        return msg

    def parse(self, authenticate: bytes) -> Authenticate:
        """Parse AUTHENTICATE; the caller then looks up ``.user`` and calls :meth:`verify`."""
        if not self.challenge_message:
            raise NtlmError("AUTHENTICATE before CHALLENGE")
        self.authenticate = parse_authenticate(authenticate)
        return self.authenticate

    def verify(self, nt_hash: bytes) -> bytes:
        """Check the NTLMv2 response and the MIC; returns the exported session key."""
        auth = self.authenticate
        if auth is None:
            raise NtlmError("verify before AUTHENTICATE")
        if len(auth.nt_response) < 16 + 28:
            raise AuthenticationFailed("not an NTLMv2 response")
        proof, blob = auth.nt_response[:16], auth.nt_response[16:]
        # Clients differ in the domain they hash (theirs, ours, or none); try each.
        for domain in dict.fromkeys((auth.domain, auth.domain.upper(), "",
                                     self.netbios_domain)):
            key = ntowfv2(nt_hash, auth.user, domain)
            if hmac.compare_digest(_hmac_md5(key, self.server_challenge + blob), proof):
                break
        else:
            raise AuthenticationFailed("wrong password")
        base = _hmac_md5(key, proof)
        if auth.flags & NegotiateFlags.KEY_EXCH:
            if len(auth.encrypted_session_key) != 16:
                raise AuthenticationFailed("key exchange without a 16-byte key")
            exported = rc4(base, auth.encrypted_session_key)
        else:
            exported = base
        if auth.mic is not None:
            zeroed = auth.raw[:72] + b"\x00" * 16 + auth.raw[88:]
            expected = _hmac_md5(exported, self.negotiate_message + self.challenge_message
                                 + zeroed)
            if not hmac.compare_digest(expected, auth.mic):
                raise AuthenticationFailed("MIC does not match")
        self.session_key = exported
        return exported

    @property
    def key_exch(self) -> bool:
        return bool(self.authenticate and self.authenticate.flags & NegotiateFlags.KEY_EXCH)

    def client_mac(self, message: bytes) -> bytes:
        return mac(self.session_key, b"client-to-server", 0, message, self.key_exch)

    def server_mac(self, message: bytes) -> bytes:
        return mac(self.session_key, b"server-to-client", 0, message, self.key_exch)
