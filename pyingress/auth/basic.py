"""HTTP basic auth: header parsing, a cache of verified credentials, hashing off the loop.

A bcrypt or yescrypt check costs tens of milliseconds of CPU, so a flood of requests could
otherwise stall the event loop or burn every core. Expensive checks run in a small thread pool
(which also bounds the CPU they can take), and a bounded LRU remembers credentials that
verified, keyed by user, stored hash and the SHA-256 of the password, so a changed password or
hash never matches an old entry and the cache never holds a password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from pyingress.auth.htpasswd import is_cheap, verify
from pyingress.auth.policy import BasicAuth

CACHE_SIZE = 4096
HASH_THREADS = 2

_executor: ThreadPoolExecutor | None = None
_dummy_hash: str | None = None
_lock = threading.Lock()


def hash_executor() -> ThreadPoolExecutor:
    """The process-wide pool for expensive password checks (created on first use)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="pyingress-auth")
        return _executor


def dummy_hash() -> str:
    """A bcrypt hash checked for unknown users, so their answer costs the same as a known one."""
    global _dummy_hash
    with _lock:
        if _dummy_hash is None:
            import bcrypt

            _dummy_hash = bcrypt.hashpw(b"pyingress-no-such-user", bcrypt.gensalt(10)).decode()
        return _dummy_hash


class CredentialCache:
    """A bounded LRU of credentials that verified; never stores the password itself."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[bytes, str, bytes], None] = OrderedDict()

    @staticmethod
    def key(user: bytes, stored: str, password: bytes) -> tuple[bytes, str, bytes]:
        return user, stored, hashlib.sha256(password).digest()

    def __contains__(self, key: tuple[bytes, str, bytes]) -> bool:
        if key in self._entries:
            self._entries.move_to_end(key)
            return True
        return False

    def add(self, key: tuple[bytes, str, bytes]) -> None:
        self._entries[key] = None
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def parse_basic_header(value: bytes | None) -> tuple[bytes, bytes] | None:
    """``(user, password)`` from an ``Authorization: Basic ...`` value, or None."""
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


class BasicAuthenticator:
    """Checks credentials against one htpasswd Secret."""

    def __init__(self, policy: BasicAuth, cache: CredentialCache | None = None) -> None:
        self.policy = policy
        self.cache = cache if cache is not None else CredentialCache()
        self._users = {user.encode(): stored for user, stored in policy.users}
        self.challenge = f'Basic realm="{policy.realm}"'.encode()

    async def check(self, header: bytes | None) -> str | None:
        """The user name when ``header`` carries valid credentials, else None."""
        credentials = parse_basic_header(header)
        if credentials is None:
            return None
        user, password = credentials
        stored = self._users.get(user)
        if stored is None:
            await self._run(password, dummy_hash())
            return None
        key = CredentialCache.key(user, stored, password)
        if key in self.cache:
            return user.decode(errors="replace")
        if not await self._run(password, stored):
            return None
        self.cache.add(key)
        return user.decode(errors="replace")

    async def _run(self, password: bytes, stored: str) -> bool:
        if is_cheap(stored):
            return verify(password, stored)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(hash_executor(), verify, password, stored)
