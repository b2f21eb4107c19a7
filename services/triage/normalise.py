"""What the model reads of a post: handles, links and hashtags in one form, in training and in serving.

Real posts carry handles and links that say nothing about the verdict: about three quarters of real
non-complaints are @-replies, and a screenshot link sits in complaints and chatter alike. Left as they
are, a model learns the names in its own corpus ("@HalcyonAir" meant complaint there) instead of the
words. So every handle becomes ``@user`` and every link ``http`` (the convention of public tweet
corpora), and a hashtag keeps its word without the ``#``. docs/annotation.md says the same to
annotators.
"""

from __future__ import annotations

import re

_URL = re.compile(r"(?:https?://|www\.)\S+|\bpic\.twitter\.com/\S+|\bt\.cn/\S+", re.IGNORECASE)
# Twitter/Bluesky/Mastodon handles (@name, @name.bsky.social, @name@instance.social) and VK's [id1|Name].
_NAME = r"\w(?:[\w.\-]*\w)?"
# Not after a Latin letter or digit (an e-mail address), but after CJK text ("回复@某某") it is a handle.
_HANDLE = re.compile(rf"(?<![A-Za-z0-9_.])@{_NAME}(?:@{_NAME})?|\[(?:id|club|public)\d+\|[^\]]*\]", re.UNICODE)
_HASHTAG = re.compile(r"(?<![\w&])#(\w)", re.UNICODE)
# Weibo topics are #话题#, closed by a second #.
_TOPIC = re.compile(r"#([^#\s]{1,40})#", re.UNICODE)
_SPACES = re.compile(r"[ \t]{2,}")


def normalise(text: str) -> str:
    """The post as the model sees it."""
    text = _URL.sub("http", text)
    text = _HANDLE.sub("@user", text)
    text = _TOPIC.sub(r"\1 ", text)
    text = _HASHTAG.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()
