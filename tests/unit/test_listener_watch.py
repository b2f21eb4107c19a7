"""Watch and Query: the boolean grammar, Unicode-aware matching, limits and hostile input."""

from __future__ import annotations

from typing import cast

import pytest

from services.listener.watch import MAX_DEPTH, MAX_QUERY_CHARS, Query, QueryError, Watch

EXAMPLE = 'skylark AND (refund OR "lost luggage") NOT hiring'


def matches(query: str, text: str) -> bool:
    return Query.parse(query).matches(text)


# Grammar and precedence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Skylark lost my luggage", False),
        ("Skylark, where is my refund?", True),
        ("skylark: lost luggage again", True),
        ("Skylark is hiring refund agents", False),
        ("refund please", False),
    ],
)
def test_example_query_needs_brand_and_a_complaint_and_no_hiring(text: str, expected: bool) -> None:
    assert matches(EXAMPLE, text) is expected


def test_phrase_or_word_matches_either() -> None:
    query = Query.parse('"class action" OR lawsuit')
    assert query.matches("joining the Class Action")
    assert query.matches("filing a lawsuit")
    assert not query.matches("a class of action films")


def test_and_binds_tighter_than_or() -> None:
    query = Query.parse("refund OR late AND luggage")
    assert query.matches("refund")
    assert query.matches("late luggage")
    assert not query.matches("late flight")


def test_not_binds_tighter_than_and() -> None:
    query = Query.parse("NOT spam refund")
    assert query.matches("refund")
    assert not query.matches("refund spam")
    assert not query.matches("ham")


def test_not_binds_tighter_than_or() -> None:
    query = Query.parse("NOT spam OR refund")
    assert query.matches("ham")
    assert query.matches("spam refund")
    assert not query.matches("spam")


def test_parentheses_group_before_implicit_and() -> None:
    query = Query.parse("(a OR b) c")
    assert query.matches("b c")
    assert query.matches("c a")
    assert not query.matches("a b")


def test_adjacent_operands_are_anded() -> None:
    query = Query.parse('refund "charged twice"')
    assert query.matches("Charged twice and no refund")
    assert not query.matches("charged twice")
    assert not query.matches("refund")


def test_not_alone_matches_posts_without_the_word() -> None:
    query = Query.parse("NOT spam")
    assert query.matches("a real complaint")
    assert not query.matches("SPAM spam spam")


def test_double_not_cancels_out() -> None:
    assert matches("NOT NOT spam", "spam")


def test_leading_minus_is_not() -> None:
    query = Query.parse("refund -spam")
    assert query.matches("refund now")
    assert not query.matches("refund spam")


def test_leading_minus_negates_a_phrase_or_a_group() -> None:
    assert not matches('refund -"gift card"', "refund as a gift card")
    assert not matches("refund -(promo OR ad)", "refund ad")
    assert matches("refund -(promo OR ad)", "refund now")


def test_hyphen_inside_a_word_is_part_of_it() -> None:
    assert matches("e-mail", "no E-mail reply")
    assert not matches("e-mail", "no email reply")


def test_lowercase_operators_are_ordinary_words() -> None:
    query = Query.parse("refund or luggage")
    assert query.matches("refund or luggage")
    assert not query.matches("refund")


def test_explicit_and_is_the_same_as_adjacency() -> None:
    for text in ("refund luggage", "luggage", "refund"):
        assert matches("refund AND luggage", text) is matches("refund luggage", text)


# Phrases, word boundaries and prefixes


@pytest.mark.parametrize(
    "text", ["lost luggage", "LOST   luggage", "lost\tluggage", "lost\n\n luggage", "lost\u00a0luggage"]
)
def test_phrase_matches_across_any_whitespace(text: str) -> None:
    assert matches('"lost luggage"', text)


def test_phrase_words_must_be_adjacent() -> None:
    assert not matches('"lost luggage"', "lost my luggage")


def test_phrase_ends_sit_at_word_boundaries() -> None:
    assert matches('"lost luggage"', "(lost luggage!)")
    assert not matches('"lost luggage"', "glost luggages")


def test_word_does_not_match_inside_a_longer_word() -> None:
    for text in ("issue", "pursue", "sued", "suede"):
        assert not matches("sue", text)


@pytest.mark.parametrize("text", ["Refund!", "refund,", "(refund)", '"refund"', "#refund", "REFUND."])
def test_word_matches_next_to_punctuation(text: str) -> None:
    assert matches("refund", text)


def test_number_matches_only_as_a_whole_number() -> None:
    assert matches("12315", "call 12315 now")
    assert matches("12315", "打12315投诉")
    assert not matches("12315", "order 123150")


def test_trailing_star_matches_a_prefix() -> None:
    query = Query.parse("refund*")
    for text in ("refund", "Refunded", "refunds pending"):
        assert query.matches(text)
    assert not query.matches("prerefund")


def test_trailing_star_on_a_phrase_makes_its_last_word_a_prefix() -> None:
    assert matches('"lost lugg*"', "lost luggage")


def test_regex_metacharacters_are_literal() -> None:
    assert not matches("a.b", "axb")
    assert matches("a.b", "see a.b here")
    assert matches("c++", "I write C++ daily")
    assert matches('"50% (off)"', "get 50% (off) today")


# Scripts and normalisation


def test_chinese_term_matches_inside_a_sentence() -> None:
    assert matches("退款", "我要求退款了")


def test_japanese_term_matches_inside_a_sentence() -> None:
    assert matches("返金", "早く返金してください")


def test_latin_word_matches_between_cjk_characters() -> None:
    assert matches("skylark", "我的skylark订单")


def test_mixed_term_keeps_the_boundary_at_its_latin_end() -> None:
    assert matches("skylark航空", "坐skylark航空的飞机")
    assert not matches("skylark航空", "myskylark航空")


def test_cyrillic_word_matches_its_inflections_but_not_longer_words() -> None:
    query = Query.parse("суд")
    assert query.matches("Подам в СУД!")
    assert query.matches("дойдёт до суда")
    assert not query.matches("такая судьба")
    assert not query.matches("подсудный")


def test_cyrillic_prefix_matches_inflections_and_longer_words_alike() -> None:
    query = Query.parse("суд*")
    for text in ("до суда", "судом", "такая судьба"):
        assert query.matches(text)
    assert not query.matches("подсудный")


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("возврат", "Где мой возврат?"),
        ("возврат", "Жду возврата денег третью неделю"),
        ("возврат", "С возвратом опять тянут"),
        ("задержка", "Опять задержки с доставкой"),
        ("задержка", "Из-за ЗАДЕРЖКИ рейса я опоздал"),
        ("доставки", "Доставкой недоволен"),
        ("жалоба", "написал жалобу в поддержку"),
    ],
)
def test_russian_term_matches_inflected_forms(term: str, text: str) -> None:
    assert Watch("ru", terms=(term,)).matches(text, "ru")


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("возврат", "невозврат кредита"),
        ("возврат", "возвратный механизм"),
        ("задержка", "задержан на таможне"),
        ("суд", "судьба"),
    ],
)
def test_russian_term_does_not_match_words_with_another_stem(term: str, text: str) -> None:
    assert not Watch("ru", terms=(term,)).matches(text, "ru")


def test_russian_phrase_matches_each_word_inflected() -> None:
    query = Query.parse('"возврат денег"')
    assert query.matches("Требую ВОЗВРАТА\nденег за билет")
    assert not query.matches("возврат денежный")
    assert not query.matches("денег возврат")


def test_russian_inflected_match_is_found_after_a_candidate_that_fails() -> None:
    # "возвратный" starts with the stem but has another one; the real match comes later.
    assert matches("возврат", "возвратный механизм сломан, жду возврата")


def test_russian_yo_and_ye_are_the_same_letter() -> None:
    assert matches("ёлка", "купили елку")
    assert matches("елка", "ЁЛКИ осыпались")


def test_russian_query_combines_stemmed_words_with_boolean_operators() -> None:
    query = Query.parse("(возврат OR задержка) AND Лумо NOT вакансия")
    assert query.matches("Лумо, где возврат моих денег?")
    assert query.matches("у Лумо опять задержки")
    assert not query.matches("Лумо: вакансии отдела возвратов")
    assert not query.matches("задержки у всех")


def test_ukrainian_letters_keep_exact_matching() -> None:
    # Not Russian: the Russian stemmer is not applied to words with і, ї, є or ґ.
    assert matches("повернення", "чекаю на повернення")
    assert not matches("відшкодування", "відшкодуванням")


def test_full_width_letters_match_ascii_and_back() -> None:
    assert matches("refund", "ＲＥＦＵＮＤ please")
    assert matches("ｒｅｆｕｎｄ", "refund please")


def test_full_width_digits_and_brand_match_half_width() -> None:
    assert matches("ABC123", "ＡＢＣ１２３の返品について")
    assert matches("ＡＢＣ", "abc")


def test_half_width_katakana_matches_full_width_and_back() -> None:
    assert matches("ﾍﾝｷﾝ", "ヘンキンしてほしい")
    assert matches("ポイント", "ﾎﾟｲﾝﾄが消えた")


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("退款", "申请了退款三周还没到账"),
        ("客服", "打了十几次客服电话都没人接"),
        ("拾光咖啡", "昨天在拾光咖啡买的三明治是坏的"),
        ("快递", "快递員態度很差"),
    ],
)
def test_chinese_terms_match_unsegmented_text(term: str, text: str) -> None:
    assert Watch("zh", terms=(term,)).matches(text, "zh")


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("返金", "返金されないまま一か月たった"),
        ("ミドリ運輸", "ミドリ運輸の配達員が荷物を投げた"),
        ("遅延", "配送遅延のお知らせすら来ない"),
        ("ｻﾎﾟｰﾄ", "サポートに電話してもつながらない"),
    ],
)
def test_japanese_terms_match_unsegmented_text(term: str, text: str) -> None:
    assert Watch("ja", terms=(term,)).matches(text, "ja")


def test_chinese_query_combines_unsegmented_terms() -> None:
    query = Query.parse("拾光咖啡 (退款 OR 投诉) NOT 招聘")
    assert query.matches("拾光咖啡不给退款，我要去投诉")
    assert not query.matches("拾光咖啡招聘店员，可退款")
    assert not query.matches("拾光咖啡的拿铁很好喝")


def test_casefolding_matches_sharp_s() -> None:
    assert matches("strasse", "STRAẞE")
    assert matches("straße", "Strasse")


# Handles and hashtags


@pytest.mark.parametrize("text", ["@skylarkair help", "SkylarkAir help", "thanks @SKYLARKAIR!", "#SkylarkAir"])
def test_handle_matches_the_handle_and_the_bare_word(text: str) -> None:
    assert Watch("skylark", terms=("@SkylarkAir",)).matches(text)


def test_handle_does_not_match_a_longer_handle() -> None:
    assert not Watch("skylark", terms=("@SkylarkAir",)).matches("@SkylarkAir_Support")


def test_hashtag_matches_the_tag_and_the_bare_word() -> None:
    watch = Watch("skylark", terms=("#Skylark",))
    assert watch.matches("#skylark fail")
    assert watch.matches("skylark fail")
    assert not watch.matches("#skylarks")


def test_handle_works_in_a_query() -> None:
    assert matches("@SkylarkAir refund", "@skylarkair where is my refund")


# Watch


def test_watch_matches_when_any_term_matches() -> None:
    watch = Watch("skylark", terms=("Skylark Air", "@SkylarkAir"))
    assert watch.matches("flew skylark\nair today")
    assert watch.matches("@skylarkair")
    assert not watch.matches("a skylark sang")


def test_watch_query_must_match_as_well_as_a_term() -> None:
    watch = Watch("skylark", terms=("skylark",), query=Query.parse("refund"))
    assert watch.matches("skylark refund")
    assert not watch.matches("skylark is great")
    assert not watch.matches("refund from someone else")


def test_watch_with_only_a_query_uses_the_query() -> None:
    watch = Watch("legal", query=Query.parse('"class action" OR lawsuit'))
    assert watch.matches("lawsuit incoming")
    assert not watch.matches("all good")


def test_empty_watch_matches_everything() -> None:
    assert Watch("all").matches("anything at all")
    assert Watch("all").matches("")


def test_empty_watch_still_filters_by_language() -> None:
    assert not Watch("all", languages=("en",)).matches("bonjour", "fr")


@pytest.mark.parametrize("language", ["en", "EN", "en-GB", "en_us"])
def test_language_filter_compares_primary_subtags_ignoring_case(language: str) -> None:
    assert Watch("skylark", terms=("skylark",), languages=("EN-US", "ja")).matches("skylark", language)


def test_language_filter_rejects_other_languages() -> None:
    assert not Watch("skylark", terms=("skylark",), languages=("en",)).matches("skylark", "de")


@pytest.mark.parametrize("language", ["", "und"])
def test_unknown_language_passes_the_filter(language: str) -> None:
    assert Watch("skylark", terms=("skylark",), languages=("en",)).matches("skylark", language)


def test_watch_term_with_nothing_to_match_is_rejected_naming_the_watch() -> None:
    with pytest.raises(QueryError, match=r"^watch 'skylark': nothing to match in '\*'$"):
        Watch("skylark", terms=("skylark", "*"))


def test_watch_term_over_the_length_limit_is_rejected() -> None:
    with pytest.raises(QueryError, match="character limit"):
        Watch("skylark", terms=("x" * (MAX_QUERY_CHARS + 1),))


def test_watch_empty_language_tag_is_rejected() -> None:
    with pytest.raises(QueryError, match="empty language tag"):
        Watch("skylark", languages=("en", " "))


def test_watch_given_a_bare_string_for_terms_is_rejected() -> None:
    with pytest.raises(TypeError, match="sequences of strings"):
        Watch("skylark", terms=cast("tuple[str, ...]", "skylark"))


def test_watch_given_a_list_of_terms_stores_a_tuple() -> None:
    watch = Watch("skylark", terms=cast("tuple[str, ...]", ["skylark"]))
    assert watch.terms == ("skylark",)
    assert hash(watch) == hash(Watch("skylark", terms=("skylark",)))


# The brand's own accounts


@pytest.mark.parametrize("handle", ["SkylarkAir", "skylarkair", "@SKYLARKAIR", " @SkylarkAir ", "ＳｋｙｌａｒｋＡｉｒ"])
def test_own_handle_matches_whatever_the_letter_case_and_leading_at(handle: str) -> None:
    watch = Watch("skylark", terms=("skylark",), own_handles=frozenset({"@SkylarkAir"}))
    assert watch.is_own(handle)


@pytest.mark.parametrize("handle", ["SkylarkAirFan", "Skylark", "", "@", "skylark_air"])
def test_other_handles_are_not_own(handle: str) -> None:
    watch = Watch("skylark", own_handles=frozenset({"SkylarkAir"}))
    assert not watch.is_own(handle)


def test_own_mastodon_handle_compares_user_and_instance_together() -> None:
    watch = Watch("skylark", own_handles=frozenset({"@Skylark@Mastodon.Example"}))
    assert watch.is_own("skylark@mastodon.example")
    assert watch.is_own("@skylark@mastodon.example")
    assert not watch.is_own("skylark")
    assert not watch.is_own("skylark@impostor.example")


def test_a_watch_without_own_handles_owns_nobody() -> None:
    assert not Watch("skylark", terms=("skylark",)).is_own("SkylarkAir")


def test_own_handles_are_stored_folded_so_equal_lists_give_equal_watches() -> None:
    watch = Watch("skylark", own_handles=frozenset({"@SkylarkAir", "skylarkair"}))
    assert watch.own_handles == frozenset({"skylarkair"})
    assert watch == Watch("skylark", own_handles=frozenset({"SKYLARKAIR"}))


def test_an_empty_own_handle_is_rejected_naming_the_watch() -> None:
    with pytest.raises(QueryError, match=r"^watch 'skylark': empty own handle$"):
        Watch("skylark", own_handles=frozenset({"SkylarkAir", "@"}))


def test_watch_given_a_bare_string_for_own_handles_is_rejected() -> None:
    with pytest.raises(TypeError, match="sequences of strings"):
        Watch("skylark", own_handles=cast("frozenset[str]", "SkylarkAir"))


# terms()


def test_terms_lists_positive_words_and_phrases_once_in_order() -> None:
    query = Query.parse(EXAMPLE + " -spam skylark")
    assert query.terms() == ["skylark", "refund", "lost luggage"]


def test_terms_count_a_double_negation_as_positive() -> None:
    assert Query.parse("NOT (spam OR NOT refund)").terms() == ["refund"]


def test_terms_keep_prefix_stars_and_handles_and_collapse_phrase_whitespace() -> None:
    assert Query.parse('refund* @SkylarkAir "lost\n  luggage"').terms() == ["refund*", "@SkylarkAir", "lost luggage"]


# Errors


@pytest.mark.parametrize(
    ("query", "message", "position"),
    [
        ("", "empty query", 0),
        ("   ", "empty query", 0),
        ("refund AND", '"AND" has no operand after it', 7),
        ("refund OR", '"OR" has no operand after it', 7),
        ("OR refund", '"OR" has no operand before it', 0),
        ("refund AND OR late", '"AND" has no operand after it', 7),
        ("(refund OR)", '"OR" has no operand after it', 8),
        ("refund NOT", '"NOT" has no operand after it', 7),
        ("refund ()", "empty parentheses", 7),
        ("(refund OR late", 'unbalanced "("', 0),
        ("((refund) late", 'unbalanced "("', 0),
        ("refund OR late)", 'unbalanced ")"', 14),
        (") refund", 'unbalanced ")"', 0),
        ('refund "lost luggage', "unclosed quote", 7),
        ('refund ""', "empty phrase", 7),
        ("refund - spam", '"-" must be followed by a word', 7),
        ("refund *", "nothing to match in '*'", 7),
    ],
)
def test_syntax_error_names_the_problem_and_position(query: str, message: str, position: int) -> None:
    with pytest.raises(QueryError) as caught:
        Query.parse(query)
    assert str(caught.value) == f"{message} at position {position}"
    assert caught.value.position == position


def test_query_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty query"):
        Query.parse("")


# Limits and hostile input


def test_query_at_the_length_limit_parses() -> None:
    text = "refund OR " + "x" * (MAX_QUERY_CHARS - len("refund OR "))
    assert Query.parse(text).matches("refund")


def test_query_over_the_length_limit_is_rejected() -> None:
    with pytest.raises(QueryError, match=r"^query is 2,001 characters, over the 2,000 limit$"):
        Query.parse("x" * (MAX_QUERY_CHARS + 1))


def test_nesting_at_the_depth_limit_parses_and_matches() -> None:
    query = Query.parse("(" * MAX_DEPTH + "refund" + ")" * MAX_DEPTH)
    assert query.matches("refund")


def test_nesting_past_the_depth_limit_is_rejected_at_the_first_paren_too_deep() -> None:
    with pytest.raises(QueryError, match=rf"^parentheses nested deeper than {MAX_DEPTH} at position {MAX_DEPTH}$"):
        Query.parse("(" * (MAX_DEPTH + 1) + "refund" + ")" * (MAX_DEPTH + 1))


def test_hundreds_of_nots_parse_without_deep_recursion() -> None:
    query = Query.parse("NOT " * 498 + "spam")
    assert query.matches("spam")
    assert not query.matches("ham")


def test_hundred_kilobytes_of_one_letter_holds_no_short_word() -> None:
    post = "a" * 100_000
    watch = Watch("hostile", terms=("a", "@a", "a*a"), query=Query.parse('a OR "a a" OR aa'))
    assert not watch.matches(post)
    assert watch.matches(post + " a")


def test_deeply_nested_query_matches_a_large_post() -> None:
    inner = "refund OR (lost luggage)"
    for _ in range(MAX_DEPTH - 1):
        inner = f"skylark* -spam ({inner})"
    query = Query.parse(inner)
    assert query.matches("x " * 50_000 + "Skylark lost my luggage")
    assert not query.matches("x " * 50_000 + "Skylark spam lost my luggage")


def test_phrase_across_a_huge_whitespace_run_matches() -> None:
    assert matches('"lost luggage"', "lost" + " " * 100_000 + "luggage")
    assert not matches('"lost luggage"', "lost " * 20_000)
