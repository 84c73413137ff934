"""Who a traffic request is for: the gateway key and its team, the end user, tags and session.

One ``Owner`` per request, stamped on its traffic ``CheckResult`` (``Owner.stamp``) by the
gateway and by ``instrument()``/``Router``; the store, budgets and cost reports read it there.

The user, tags and session are the caller's labels, read where callers already put them
(``read_owner``): the protocol's own user field (OpenAI ``user``, Anthropic
``metadata.user_id``), LiteLLM's ``metadata.tags``, the ``x-llmpulse-user``,
``x-llmpulse-tags`` (comma-separated) and ``x-llmpulse-session`` headers, and in-process the
labels of the enclosing ``attributed()`` blocks. A header wins over the body (it is llmpulse's
own, explicit), the body over an enclosing block; tags from all of them are merged in that
order (block, body, header), duplicates dropped.

Labels are bounded (``MAX_TAGS`` tags of at most ``MAX_TAG_CHARS`` characters, a user or
session of at most ``MAX_LABEL_CHARS``) and must be one line of printable text: anything else
raises ``LabelError`` naming the field, which the gateway answers with a 400; nothing is cut
silently, as a cut label would be counted under another name. A tag is kept as written
(``feature=search`` is one tag). Being outside text that is stored, labels then pass the
redactor (``Owner.redacted``) like any other.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping

from llmpulse.result import CheckResult

USER_HEADER = "x-llmpulse-user"
TAGS_HEADER = "x-llmpulse-tags"
SESSION_HEADER = "x-llmpulse-session"
MAX_TAGS = 32
MAX_TAG_CHARS = 128
MAX_LABEL_CHARS = 256  # a user or a session id


class LabelError(ValueError):
    """A label that is too long, too many, not text or not printable; the message names it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    key_name: str | None = None
    team: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    session: str | None = None

    def stamp(self, result: CheckResult) -> None:
        result.key_name, result.team = self.key_name, self.team
        result.user, result.tags, result.session = self.user, list(self.tags), self.session

    def redacted(self, redact: Callable[[str], str]) -> Owner:
        """With its labels (the caller's text) passed through ``redact``."""
        if self.user is None and not self.tags and self.session is None:
            return self
        return dataclasses.replace(
            self,
            user=None if self.user is None else redact(self.user),
            tags=tuple(redact(t) for t in self.tags),
            session=None if self.session is None else redact(self.session),
        )


NOBODY = Owner()
_around: contextvars.ContextVar[Owner] = contextvars.ContextVar("llmpulse_owner", default=NOBODY)


def current() -> Owner:
    """The labels of the enclosing ``attributed()`` blocks (``NOBODY`` outside any)."""
    return _around.get()


@contextlib.contextmanager
def attributed(
    user: str | None = None, tags: Iterable[str] = (), session: str | None = None
) -> Iterator[Owner]:
    """Label every ``instrument()``-ed SDK call and ``Router`` call made in the block.

    A nested block's user and session replace the outer one's, its tags are added to them. A
    context variable carries them, so asyncio tasks created in the block (and ``to_thread``)
    inherit them; a plain ``threading.Thread`` does not copy its starter's context, so enter
    the block in that thread (or run it in ``contextvars.copy_context()``). ``LabelError``
    (a ``ValueError``) at once for a label past its bounds.
    """
    inside = nested(_around.get(), labels(user, tags, session))
    token = _around.set(inside)
    try:
        yield inside
    finally:
        _around.reset(token)


def labels(user: str | None = None, tags: Iterable[str] = (), session: str | None = None) -> Owner:
    """An owner of these labels alone (in-process keyword arguments), checked."""
    return _nest(
        NOBODY,
        _label(user, "user", MAX_LABEL_CHARS),
        _tags(tags, "tags"),
        _label(session, "session", MAX_LABEL_CHARS),
    )


def nested(outer: Owner, inner: Owner) -> Owner:
    """``inner``'s labels within ``outer``'s: its user and session win, its tags add."""
    return _nest(outer, inner.user, inner.tags, inner.session)


def read_owner(
    key_name: str | None = None,
    team: str | None = None,
    *,
    user: str | None = None,
    tags: Iterable[str] = (),
    session: str | None = None,
    headers: Mapping[str, str] | None = None,
    within: Owner = NOBODY,
    user_field: str = "user",
    tags_field: str = "metadata.tags",
) -> Owner:
    """The owner of one request: the key's name and team, and the labels of its body
    (``user``, ``tags``, ``session``), its ``x-llmpulse-*`` ``headers`` and the blocks
    ``within`` it runs. ``LabelError`` names the body field (``user_field``, ``tags_field``) or
    the header at fault."""
    user = _label(user, user_field, MAX_LABEL_CHARS)
    found = _tags(tags, tags_field)
    session = _label(session, "session", MAX_LABEL_CHARS)
    if headers is not None:
        user = _label(_header(headers, USER_HEADER), USER_HEADER, MAX_LABEL_CHARS) or user
        listed = _header(headers, TAGS_HEADER)
        if listed:
            found += _tags([t.strip() for t in listed.split(",")], TAGS_HEADER)
        session = _label(_header(headers, SESSION_HEADER), SESSION_HEADER, MAX_LABEL_CHARS) or (
            session
        )
    owner = _nest(within, user, found, session)
    if key_name is None and team is None:
        return owner
    return dataclasses.replace(owner, key_name=key_name, team=team)


def _nest(outer: Owner, user: str | None, tags: tuple[str, ...], session: str | None) -> Owner:
    merged = tuple(dict.fromkeys(outer.tags + tags)) if tags else outer.tags
    if len(merged) > MAX_TAGS:
        raise LabelError(f"the request has {len(merged)} tags; at most {MAX_TAGS} are accepted")
    if user is None and session is None and merged is outer.tags:
        return outer
    return Owner(None, None, user or outer.user, merged, session or outer.session)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None or value.isascii():
        return value
    # Servers hand over header bytes as Latin-1; clients send UTF-8.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _label(value: object, field: str, limit: int) -> str | None:
    """``value`` as a label; None for none or an empty one."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LabelError(f"'{field}' must be a string")
    if len(value) > limit:
        raise LabelError(f"'{field}' is {len(value)} characters long; at most {limit} are accepted")
    if not value.isprintable():
        raise LabelError(f"'{field}' contains control or other non-printable characters")
    return value


def _tags(values: Iterable[str], field: str) -> tuple[str, ...]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise LabelError(f"'{field}' must be a list of strings")
    out: list[str] = []
    for i, value in enumerate(values):
        if len(out) >= MAX_TAGS:
            raise LabelError(
                f"'{field}' holds more than {MAX_TAGS} tags; at most {MAX_TAGS} are accepted"
            )
        tag = _label(value, f"{field}[{i}]", MAX_TAG_CHARS)
        if tag is not None:
            out.append(tag)
    return tuple(out)
