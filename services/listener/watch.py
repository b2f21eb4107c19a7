"""Watches: what a source listens for, and the matcher every post goes through.

A watch names brand terms (names, @handles, #hashtags), an optional boolean keyword query and
optional languages. Sources that cannot filter server-side rely on ``Watch.matches`` alone, so
it is built for hostile input: queries are parsed by hand under length and nesting limits, and
every pattern is made of escaped text and starts with a literal, which lets the regex engine
scan for it in linear time instead of trying a lookbehind at every position.

Matching rules, for watch terms and query words and phrases alike:

- Text and terms are compared after NFKC normalisation and Unicode casefolding, so full-width
  and half-width forms ("ＡＢＣ" and "abc", "ｶﾀｶﾅ" and "カタカナ") and any letter case match;
  "ё" is compared as "е", as most Russian text writes it.
- An end of a term that is a letter or digit of a spaced script (Latin, Cyrillic, Greek...)
  must sit at a word boundary: ``sue`` does not match "issue". Letters of scripts written
  without spaces (Chinese, Japanese, Korean, Thai...) neither need nor form a boundary, so
  ``退款`` matches inside a sentence and ``skylark`` matches in "我的skylark订单".
- Russian words match their inflected forms: a word of Russian letters matches any word with
  the same Snowball stem, so ``возврат`` matches "возврата" and "возвратом", ``задержка``
  matches "задержки", and ``суд`` matches "суда" but not "судьба". Forms whose stem changes
  inside (the fleeting vowel of "задержек") are not found this way: list them, or use ``*``.
- A trailing ``*`` drops the right boundary: ``refund*`` matches "refunded", ``суд*`` matches
  "суда" and "судьба" alike. The prefix is matched as written, not stemmed.
- The words of a phrase match across any run of whitespace, newlines included.
- ``@handle`` and ``#tag`` also match the bare word: ``@SkylarkAir`` hits "SkylarkAir".

A watch may also name the brand's own accounts (``own_handles``). Their posts are published
whatever the terms say, marked ``own_account``: a brand's reply rarely names the brand, and the
router records it in the customer's case instead of treating it as a complaint.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import snowballstemmer

from services.listener.errors import ListenerError

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_QUERY_CHARS = 2_000
MAX_DEPTH = 32

# Scripts written without spaces between words: no word boundaries exist inside them.
_UNSPACED = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK and Kangxi radicals
    "\u3005-\u3007\u3021-\u3029\u3038-\u303c"  # ideographic iteration marks and numerals
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B to G
)
_WORD_CHAR = f"[^\\W{_UNSPACED}]"
_IS_WORD_CHAR = re.compile(_WORD_CHAR)
# A word the Russian stemmer applies to, as folded (so without "ё").
_RUSSIAN_WORD = re.compile("[а-я]+")
_BARE_WORD = re.compile(r'[^\s()"]+')
_SIGILS = ("@", "#")
# "und" is BCP-47 for "undetermined", which is what the triage language guess says when unsure.
_UNKNOWN_LANGUAGES = frozenset({"", "und"})


class QueryError(ListenerError, ValueError):
    """A query or watch that cannot be used; ``position`` is a 0-based offset into the query.

    Also a ValueError, so pydantic validators that raise it report the field like any bad value.
    """

    def __init__(self, problem: str, position: int | None = None) -> None:
        super().__init__(problem if position is None else f"{problem} at position {position}")
        self.problem = problem
        self.position = position


def _fold(text: str) -> str:
    # NFKC again after casefolding, because casefolding can leave a few characters unnormalised.
    # "ё" → "е" keeps lengths, so offsets into the folded text stay those of the text.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).replace("ё", "е")


# The stemmer keeps its working word in the object, so each thread gets its own.
_stemmers = threading.local()


@functools.lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    """The Snowball stem of a folded Russian word: only endings are removed, so it is a prefix of the word."""
    stemmer = getattr(_stemmers, "russian", None)
    if stemmer is None:
        stemmer = _stemmers.russian = snowballstemmer.stemmer("russian")
    return str(stemmer.stemWord(word)) or word


@dataclass(frozen=True)
class _Pattern:
    """A compiled term. The regex finds candidates in linear time; for a term with Russian words it
    captures the rest of each such word after its stem, and a candidate matches only if every word
    so found (stem + rest) has that same stem, one of ``stems``."""

    regex: re.Pattern[str]
    stems: tuple[str, ...] = ()

    def found_in(self, folded: str) -> bool:
        if not self.stems:
            return self.regex.search(folded) is not None
        position = 0
        while (match := self.regex.search(folded, position)) is not None:
            if all(_stem(stem + tail) == stem for stem, tail in zip(self.stems, match.groups(), strict=True)):
                return True
            position = match.start() + 1
        return False


@dataclass(frozen=True)
class _Word:
    """One word of a term: the literal every match starts with, then, for a stemmed word, the rest of it."""

    literal: str
    stem: str | None = None

    @classmethod
    def of(cls, word: str, *, stemmed: bool) -> _Word:
        if not stemmed or not _RUSSIAN_WORD.fullmatch(word):
            return cls(word)
        stem = _stem(word)
        return cls(stem, stem)

    @property
    def rest(self) -> str:
        # Possessive: the rest of the word is taken whole, so the stem check sees the word as written.
        return f"({_WORD_CHAR}*+)" if self.stem is not None else ""


def _compile(term: str, position: int | None) -> _Pattern:
    body = _fold(term).strip()
    prefix = body.endswith("*")
    if prefix:
        body = body[:-1]
    if len(body) > 1 and body.startswith(_SIGILS):
        body = body[1:]
    texts = body.split()
    if not texts:
        raise QueryError(f"nothing to match in {term!r}", position)
    # A prefix term's last word is matched as written: "суд*" means words that begin with "суд".
    words = [_Word.of(text, stemmed=not (prefix and index == len(texts) - 1)) for index, text in enumerate(texts)]
    first = words[0]
    pattern = re.escape(first.literal)
    if _IS_WORD_CHAR.match(first.literal[0]):
        # The left boundary is checked behind the literal, so the pattern still starts with it.
        pattern += f"(?<!{_WORD_CHAR}.{{{len(first.literal)}}})"
    pattern += first.rest
    for word in words[1:]:
        # Possessive: whitespace never needs giving back, so a long run cannot backtrack.
        pattern += r"\s++" + re.escape(word.literal) + word.rest
    if not prefix and _IS_WORD_CHAR.match(texts[-1][-1]):
        pattern += f"(?!{_WORD_CHAR})"
    return _Pattern(re.compile(pattern), tuple(word.stem for word in words if word.stem is not None))


@dataclass(frozen=True)
class _Term:
    text: str
    pattern: _Pattern

    def matches(self, folded: str) -> bool:
        return self.pattern.found_in(folded)

    def positives(self, negated: bool) -> Iterator[str]:
        if not negated:
            yield self.text


@dataclass(frozen=True)
class _Not:
    operand: _Node

    def matches(self, folded: str) -> bool:
        return not self.operand.matches(folded)

    def positives(self, negated: bool) -> Iterator[str]:
        yield from self.operand.positives(not negated)


@dataclass(frozen=True)
class _All:
    operands: tuple[_Node, ...]

    def matches(self, folded: str) -> bool:
        return all(operand.matches(folded) for operand in self.operands)

    def positives(self, negated: bool) -> Iterator[str]:
        for operand in self.operands:
            yield from operand.positives(negated)


@dataclass(frozen=True)
class _Any:
    operands: tuple[_Node, ...]

    def matches(self, folded: str) -> bool:
        return any(operand.matches(folded) for operand in self.operands)

    def positives(self, negated: bool) -> Iterator[str]:
        for operand in self.operands:
            yield from operand.positives(negated)


_Node = _Term | _Not | _All | _Any
_Kind = Literal["word", "phrase", "AND", "OR", "NOT", "(", ")"]
_OPERATORS: dict[str, _Kind] = {"AND": "AND", "OR": "OR", "NOT": "NOT"}


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token("(" if char == "(" else ")", char, i))
            i += 1
        elif char == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed quote", i)
            phrase = " ".join(text[i + 1 : end].split())
            if not phrase:
                raise QueryError("empty phrase", i)
            tokens.append(_Token("phrase", phrase, i))
            i = end + 1
        elif char == "-":
            following = text[i + 1 : i + 2]
            if not following or following.isspace() or following == ")":
                raise QueryError('"-" must be followed by a word', i)
            tokens.append(_Token("NOT", char, i))
            i += 1
        else:
            word = _BARE_WORD.match(text, i)
            assert word is not None  # any other character starts a bare word
            tokens.append(_Token(_OPERATORS.get(word.group(), "word"), word.group(), i))
            i = word.end()
    return tokens


class _Parser:
    """Recursive descent; only parentheses recurse, so MAX_DEPTH bounds the stack."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._next = 0

    def parse(self) -> _Node:
        node = self._any(0)
        extra = self._peek()
        if extra is not None:  # the loops below stop early only at a ")" nobody opened
            raise QueryError('unbalanced ")"', extra.position)
        return node

    def _peek(self) -> _Token | None:
        return self._tokens[self._next] if self._next < len(self._tokens) else None

    def _take(self) -> _Token:
        token = self._tokens[self._next]
        self._next += 1
        return token

    def _any(self, depth: int) -> _Node:
        operands = [self._all(depth, None)]
        while (token := self._peek()) is not None and token.kind == "OR":
            operands.append(self._all(depth, self._take()))
        return operands[0] if len(operands) == 1 else _Any(tuple(operands))

    def _all(self, depth: int, after: _Token | None) -> _Node:
        operands = [self._unary(depth, after)]
        while (token := self._peek()) is not None and token.kind not in ("OR", ")"):
            # Adjacent operands with no operator between them are ANDed.
            operands.append(self._unary(depth, self._take() if token.kind == "AND" else None))
        return operands[0] if len(operands) == 1 else _All(tuple(operands))

    def _unary(self, depth: int, after: _Token | None) -> _Node:
        # A loop, not recursion: a run of NOTs must not count against the stack.
        negated = False
        while (token := self._peek()) is not None and token.kind == "NOT":
            negated = not negated
            after = self._take()
        operand = self._operand(depth, after)
        return _Not(operand) if negated else operand

    def _operand(self, depth: int, after: _Token | None) -> _Node:
        token = self._peek()
        if token is None or token.kind in ("AND", "OR", ")"):
            if after is not None:
                raise QueryError(f'"{after.text}" has no operand after it', after.position)
            if token is None:
                raise QueryError("empty query", 0)
            if token.kind == ")":
                raise QueryError('unbalanced ")"', token.position)
            raise QueryError(f'"{token.text}" has no operand before it', token.position)
        self._take()
        if token.kind == "(":
            return self._group(token, depth + 1)
        return _Term(token.text, _compile(token.text, token.position))

    def _group(self, opening: _Token, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise QueryError(f"parentheses nested deeper than {MAX_DEPTH}", opening.position)
        token = self._peek()
        if token is None:
            raise QueryError('unbalanced "("', opening.position)
        if token.kind == ")":
            raise QueryError("empty parentheses", opening.position)
        node = self._any(depth)
        if self._peek() is None:
            raise QueryError('unbalanced "("', opening.position)
        self._take()
        return node


@dataclass(frozen=True)
class Query:
    """A boolean keyword query.

    Grammar: words, double-quoted phrases, ``AND``, ``OR``, ``NOT`` (uppercase only; lowercase
    ones are words), parentheses, and an implicit AND between adjacent operands. NOT binds
    tighter than AND, AND tighter than OR. ``-word`` (also ``-"phrase"`` and ``-(...)``) is
    NOT. A trailing ``*`` makes a word or phrase match as a prefix.
    """

    text: str
    root: _Node = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Query:
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"query is {len(text):,} characters, over the {MAX_QUERY_CHARS:,} limit")
        return cls(text, _Parser(_tokenize(text)).parse())

    def matches(self, text: str) -> bool:
        return self.root.matches(_fold(text))

    def terms(self) -> list[str]:
        """The words and phrases a matching post may contain (not those under NOT), for server-side search.

        As written, once each: phrases without their quotes, prefix words with their ``*``.
        """
        return list(dict.fromkeys(self.root.positives(negated=False)))


def fold_handle(handle: str) -> str:
    """A handle as compared: casefolded, without a leading "@"; "@user@instance" keeps its instance."""
    return _fold(handle).strip().removeprefix("@")


def _primary_subtag(tag: str) -> str:
    return tag.strip().replace("_", "-").split("-", 1)[0].casefold()


@dataclass(frozen=True)
class Watch:
    """What a source listens for.

    A post matches when any of ``terms`` matches (none given: no constraint), ``query`` matches
    if set, and its language is one of ``languages`` if set. A post of unknown language ("" or
    "und") passes the language check, since many platforms do not say.
    """

    name: str
    terms: tuple[str, ...] = ()
    query: Query | None = None
    languages: tuple[str, ...] = ()
    own_handles: frozenset[str] = frozenset()
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False, default=())
    _languages: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        # Config loaders hand over lists; a bare string would silently become one term per letter.
        if isinstance(self.terms, str) or isinstance(self.languages, str) or isinstance(self.own_handles, str):
            raise TypeError(f"watch {self.name!r}: terms, languages and own_handles must be sequences of strings")
        object.__setattr__(self, "terms", tuple(self.terms))
        object.__setattr__(self, "languages", tuple(self.languages))
        own = frozenset(fold_handle(handle) for handle in self.own_handles)
        if "" in own:
            raise QueryError(f"watch {self.name!r}: empty own handle")
        object.__setattr__(self, "own_handles", own)
        patterns = []
        for term in self.terms:
            if len(term) > MAX_QUERY_CHARS:
                raise QueryError(f"watch {self.name!r}: a term is over the {MAX_QUERY_CHARS:,} character limit")
            try:
                patterns.append(_compile(term, None))
            except QueryError as exc:
                raise QueryError(f"watch {self.name!r}: {exc.problem}") from exc
        languages = frozenset(_primary_subtag(tag) for tag in self.languages)
        if "" in languages:
            raise QueryError(f"watch {self.name!r}: empty language tag")
        object.__setattr__(self, "_patterns", tuple(patterns))
        object.__setattr__(self, "_languages", languages)

    def is_own(self, handle: str) -> bool:
        """Whether ``handle`` is one of the brand's own accounts ("@" and letter case do not matter)."""
        return bool(self.own_handles) and fold_handle(handle) in self.own_handles

    def matches(self, text: str, language: str = "") -> bool:
        if self._languages:
            tag = _primary_subtag(language)
            if tag not in _UNKNOWN_LANGUAGES and tag not in self._languages:
                return False
        if not self._patterns and self.query is None:
            return True
        folded = _fold(text)
        if self._patterns and not any(pattern.found_in(folded) for pattern in self._patterns):
            return False
        return self.query is None or self.query.root.matches(folded)
