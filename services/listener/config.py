"""The ``listener`` section of the config file: watches and sources."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from services.listener.sources.charset import codec_name
from services.listener.watch import Query, QueryError, Watch, fold_handle
from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/") if value.count("/") > 2 and value.endswith("/") else value


class WatchSettings(Section):
    """What to listen for: any of ``terms`` (brands, handles), and ``query`` if set, in ``languages``."""

    name: str = Field(pattern=SOURCE_NAME_PATTERN)
    terms: list[str] = Field(default_factory=list)
    # Boolean query: AND, OR, NOT, "quoted phrases", parentheses; adjacent terms are ANDed.
    query: str = ""
    # BCP-47 primary tags (en, zh, ja, ru); empty means any. Posts of unknown language pass.
    languages: list[str] = Field(default_factory=list)
    # The brand's own accounts ("SkylarkAir" or "@SkylarkAir"; any letter case; a Mastodon account of
    # another instance as "@user@instance"). Their posts are never complaints: they are published even
    # when no term matches, and the router records them in the thread's open case as brand replies.
    own_handles: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _watch_builds(self) -> WatchSettings:
        try:
            Watch(
                name=self.name,
                terms=tuple(self.terms),
                languages=tuple(self.languages),
                own_handles=frozenset(self.own_handles),
            )
        except (QueryError, TypeError) as exc:
            raise ValueError(str(exc)) from exc
        return self

    @field_validator("own_handles")
    @classmethod
    def _handles_name_someone(cls, value: list[str]) -> list[str]:
        for index, handle in enumerate(value):
            if not fold_handle(handle):
                raise ValueError(f"handle {index} ({handle!r}) is empty")
        return value

    @field_validator("query")
    @classmethod
    def _query_parses(cls, value: str) -> str:
        if value:
            try:
                Query.parse(value)
            except QueryError as exc:
                raise ValueError(f"invalid query: {exc}") from exc
        return value


class SourceSettings(Section):
    """What every source has: a name (part of KV keys), the watch it serves, its schedule."""

    name: str = Field(pattern=SOURCE_NAME_PATTERN)
    # Name of a watch under listener.watches; empty keeps every post the source returns.
    watch: str = ""
    enabled: bool = True


class HttpSourceSettings(SourceSettings):
    """Sources that poll an HTTP API or feed."""

    interval_s: float = Field(default=300.0, ge=5.0, le=86_400.0)
    # Each wait is interval × (1 ± jitter), so many listeners never poll in step.
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    # Hosts, IPs or CIDRs this source may reach although they are private or loopback (SSRF guard).
    allow_hosts: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    timeout_s: float = Field(default=20.0, gt=0, le=300)
    # On the very first poll, how far back to take posts.
    backfill_hours: float = Field(default=24.0, ge=0, le=24 * 30)
    # Raise an operational alert after this long without a successful poll, or this many failures in a row.
    silent_after_s: float = Field(default=6 * 3600.0, ge=60)
    failing_after: int = Field(default=5, ge=1)


class RssSourceSettings(HttpSourceSettings):
    """RSS or Atom feed: news, blogs, app-store review feeds, public-opinion sites with feeds."""

    kind: Literal["rss"]
    url: str
    # Platform label on mentions, e.g. "appstore", "weibo", "blog".
    platform: str = Field(default="rss", pattern=r"^[a-z0-9_-]{1,32}$")

    _check_url = field_validator("url")(_http_url)


class RsshubSourceSettings(HttpSourceSettings):
    """One route of a self-hosted RSSHub instance (weibo, zhihu, bilibili, 黑猫投诉 …); docs/sources.md."""

    kind: Literal["rsshub"]
    # The instance, e.g. http://rsshub.clamor.svc:1200.
    base_url: str
    # The route as RSSHub's docs write it, parameters filled in: /weibo/keyword/SkylarkAir.
    route: str
    # The instance's ACCESS_KEY, sent as the `key` query parameter; a secret (write "${RSSHUB_KEY}").
    access_key: str = Field(default="", repr=False)
    # rss: RSSHub's RSS 2.0 output; json: its JSON Feed 1.1 output (?format=json).
    format: Literal["rss", "json"] = "rss"
    # Platform label on mentions; empty infers it from the route (services/listener/sources/rsshub_routes.py).
    platform: str = Field(default="", pattern=r"^$|^[a-z0-9_-]{1,32}$")
    # BCP-47 primary tag for posts the route does not tag itself; empty: the platform's usual language.
    language: str = Field(default="", pattern=r"^$|^[a-z]{2,3}$")

    _check_url = field_validator("base_url")(_http_url)

    @field_validator("route")
    @classmethod
    def _route_is_a_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', as RSSHub's docs write routes (/weibo/keyword/…); got {value!r}")
        if any(c.isspace() for c in value) or "#" in value:
            raise ValueError("must not contain spaces or '#'; percent-encode them")
        return value


class RedditSourceSettings(HttpSourceSettings):
    """Reddit search or subreddit listing, public JSON or an app-only OAuth token."""

    kind: Literal["reddit"]
    base_url: str = "https://www.reddit.com"
    subreddit: str = ""
    query: str = ""
    # With both set, an app-only token is fetched from token_url and oauth_base_url is used.
    client_id: str = ""
    client_secret: str = ""
    token_url: str = "https://www.reddit.com/api/v1/access_token"
    oauth_base_url: str = "https://oauth.reddit.com"
    user_agent: str = "clamor-listener/0.1"

    _check_urls = field_validator("base_url", "token_url", "oauth_base_url")(_http_url)

    @model_validator(mode="after")
    def _has_something_to_read(self) -> RedditSourceSettings:
        if not self.subreddit and not self.query:
            raise ValueError("set subreddit, query, or both")
        if bool(self.client_id) != bool(self.client_secret):
            raise ValueError("client_id and client_secret go together")
        return self


class MastodonSourceSettings(HttpSourceSettings):
    """Hashtag timeline or status search on any Mastodon instance."""

    kind: Literal["mastodon"]
    base_url: str
    hashtag: str = ""
    query: str = ""
    # Search of statuses needs a token on most instances; hashtag timelines are public.
    access_token: str = ""

    _check_url = field_validator("base_url")(_http_url)

    @model_validator(mode="after")
    def _reads_one_thing(self) -> MastodonSourceSettings:
        if bool(self.hashtag) == bool(self.query):
            raise ValueError("set exactly one of hashtag and query")
        return self


class BlueskySourceSettings(HttpSourceSettings):
    """app.bsky.feed.searchPosts on the public AppView."""

    kind: Literal["bluesky"]
    base_url: str = "https://public.api.bsky.app"
    query: str

    _check_url = field_validator("base_url")(_http_url)


class HackerNewsSourceSettings(HttpSourceSettings):
    """Hacker News through the Algolia search API, newest first."""

    kind: Literal["hackernews"]
    base_url: str = "https://hn.algolia.com"
    query: str
    # Algolia tags filter: stories and comments by default.
    tags: str = "(story,comment)"

    _check_url = field_validator("base_url")(_http_url)


class XSourceSettings(HttpSourceSettings):
    """X API v2 recent search with an app bearer token."""

    kind: Literal["x"]
    base_url: str = "https://api.x.com"
    query: str
    bearer_token: str

    _check_url = field_validator("base_url")(_http_url)


class JsonApiSourceSettings(HttpSourceSettings):
    """Any JSON HTTP API (review sites, in-house systems), mapped to posts by dotted paths."""

    kind: Literal["json"]
    url: str
    platform: str = Field(default="json", pattern=r"^[a-z0-9_-]{1,32}$")
    headers: dict[str, str] = Field(default_factory=dict)
    # Dotted path to the list of items ("" when the body is the list itself).
    items_path: str = ""
    # Post field → dotted path inside an item; id and text are required.
    fields: dict[str, str] = Field(default_factory=lambda: {"id": "id", "text": "text"})

    _check_url = field_validator("url")(_http_url)


class VkSourceSettings(HttpSourceSettings):
    """VK newsfeed.search (posts on open walls) with a service token, ≤ 3 requests a second per token."""

    kind: Literal["vk"]
    base_url: str = "https://api.vk.com"
    # A service token (the app's "service key"): newsfeed.search takes one, no user login needed.
    access_token: str = Field(min_length=1)
    api_version: str = Field(default="5.199", pattern=r"^5\.\d{1,4}$")
    query: str = Field(min_length=1)
    # Posts a page; VK answers at most 200, and only the first 1000 results of a search.
    count: int = Field(default=200, ge=1, le=200)

    _check_url = field_validator("base_url")(_http_url)


class DvachSourceSettings(HttpSourceSettings):
    """A 2ch.hk board: the threads its catalog lists (or the ones named), read as JSON."""

    kind: Literal["dvach"]
    base_url: str = "https://2ch.hk"
    board: str = Field(pattern=r"^[a-z0-9]{1,20}$")
    # Thread numbers to follow; empty follows the threads the board's catalog lists.
    threads: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    # Politeness per board: thread pages read a poll at most; the rest wait for the next poll.
    max_threads_per_poll: int = Field(default=5, ge=1, le=50)
    interval_s: float = Field(default=300.0, ge=60.0, le=86_400.0)

    _check_url = field_validator("base_url")(_http_url)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_from_text(cls, value: object) -> object:
        # "300,301" from an environment variable or `clamor sources fetch -o threads=…`.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class FivechSourceSettings(HttpSourceSettings):
    """A 5ch-style board (5ch and its mirrors): subject.txt and dat files, Shift_JIS by convention."""

    kind: Literal["fivech"]
    # The board's server: threads are at <base_url>/<board>/dat/<key>.dat.
    base_url: str
    board: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Politeness: dat files read per poll at most; threads left over are read by the next polls.
    max_threads_per_poll: int = Field(default=10, ge=1, le=100)
    # Of bodies that declare no charset; a charset in Content-Type wins.
    encoding: str = "cp932"
    platform: str = Field(default="5ch", pattern=r"^[a-z0-9_-]{1,32}$")
    # 5ch serves clients that name themselves the way its browsers do ("Monazilla/1.00 ...").
    user_agent: str = "Monazilla/1.00 clamor-listener/0.1"
    language: str = "ja"

    _check_url = field_validator("base_url")(_http_url)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if codec_name(value) is None:
            raise ValueError(f"unknown encoding {value!r} (try cp932, euc-jp, utf-8)")
        return value


class WebhookSourceSettings(SourceSettings):
    """Posts pushed to the listener: POST JSON to /hooks/<name>, signed with HMAC-SHA256."""

    kind: Literal["webhook"]
    platform: str = Field(default="webhook", pattern=r"^[a-z0-9_-]{1,32}$")
    # Several secrets allow rotation: a signature made with any of them is accepted.
    secrets: list[str] = Field(min_length=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)


class ReplaySourceSettings(SourceSettings):
    """Publishes posts from a JSON-lines file at a set rate (demos, load tests, backfills)."""

    kind: Literal["replay"] = "replay"
    path: RelativePath
    rate_per_second: float = Field(default=20.0, gt=0, le=10_000)


AnySourceSettings = Annotated[
    RssSourceSettings
    | RsshubSourceSettings
    | RedditSourceSettings
    | MastodonSourceSettings
    | BlueskySourceSettings
    | HackerNewsSourceSettings
    | XSourceSettings
    | JsonApiSourceSettings
    | VkSourceSettings
    | DvachSourceSettings
    | FivechSourceSettings
    | WebhookSourceSettings
    | ReplaySourceSettings,
    Field(discriminator="kind"),
]


class WebhookServerSettings(Section):
    """The HTTP endpoint for webhook sources; port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = Field(default=8071, ge=0, le=65535)


class ListenerSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50071)
    watches: list[WatchSettings] = Field(default_factory=list)
    sources: list[AnySourceSettings] = Field(default_factory=list)
    webhook_server: WebhookServerSettings = Field(default_factory=WebhookServerSettings)
    # With several replicas, each polled or replayed source is polled by the one replica that holds
    # its lease, renewed every third of this. A killed replica's sources move to the others once
    # its leases lapse, about this long after it died; a clean shutdown hands them over at once.
    lease_ttl_s: float = Field(default=15.0, ge=3.0, le=300.0)

    @model_validator(mode="after")
    def _names_are_consistent(self) -> ListenerSettings:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        watches = {w.name for w in self.watches}
        for index, source in enumerate(self.sources):
            if source.watch and source.watch not in watches:
                known = ", ".join(sorted(watches)) or "none defined"
                raise ValueError(
                    f"sources[{index}] ({source.name}): no watch named {source.watch!r} (watches: {known})"
                )
        return self


class ListenerConfig(CommonConfig):
    listener: ListenerSettings = Field(default_factory=dict, validate_default=True)
