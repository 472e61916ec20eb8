"""Key format, limits and the SQL reader, without requests."""
import types

from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import SimpleTestCase, override_settings

from blog.models import Article, Tag
from userrouter_purge import OVERFLOW_KEY, instance_key, model_key
from userrouter_purge.keys import (
    MAX_HEADER_BYTES,
    MAX_KEYS,
    Collector,
    check_key,
    fits,
    install_query_wrapper,
    query_wrapper,
    split_header,
    tables_read,
)

from .models import Code, PageProxy, Post


class KeyFormatTests(SimpleTestCase):
    def test_formats(self):
        tests = [
            ("int pk", instance_key(Article(pk=7)), "blog.article:7"),
            ("model", model_key(Article), "blog.article"),
            ("proxy uses its concrete model", instance_key(PageProxy(pk=3)), "tests.page:3"),
            ("child of multi-table inheritance", instance_key(Post(pk=4)), "tests.post:4"),
            ("string pk, escaped", instance_key(Code(pk="a b,c%d/é")), "tests.code:a%20b%2Cc%25d/%C3%A9"),
        ]
        for name, got, want in tests:
            with self.subTest(name):
                self.assertEqual(got, want)
                check_key(got)

    def test_long_pk_is_hashed(self):
        key = instance_key(Code(pk="x" * 1500))
        self.assertTrue(key.startswith("tests.code:~"), key)
        self.assertLessEqual(len(key), 1024)
        self.assertEqual(key, instance_key(Code(pk="x" * 1500)))

    def test_unsaved_instance_has_no_key(self):
        with self.assertRaisesMessage(ValueError, "has no pk"):
            instance_key(Article())

    def test_check_key(self):
        for good in ["a", "blog.article:1", "x" * 1024, "!~"]:
            self.assertEqual(check_key(good), good)
        for bad in ["", "a b", "a,b", "é", "x" * 1025, "tab\t", 5, None]:
            with self.subTest(bad=bad), self.assertRaisesMessage(ValueError, "not a surrogate key"):
                check_key(bad)

    def test_split_header(self):
        self.assertEqual(split_header(" a b,c ,, d\te"), ["a", "b", "c", "d", "e"])


class LimitTests(SimpleTestCase):
    def test_fits(self):
        self.assertTrue(fits(["k%d" % i for i in range(MAX_KEYS)]))
        self.assertFalse(fits(["k%d" % i for i in range(MAX_KEYS + 1)]))
        self.assertTrue(fits(["k%d" % i for i in range(MAX_KEYS)] * 2), "duplicates count once")
        # 16 keys of 1023 bytes and 15 spaces = 16383 bytes; one byte more is over.
        keys = ["%02d" % i + "x" * 1021 for i in range(16)]
        self.assertEqual(len(" ".join(keys)), MAX_HEADER_BYTES - 1)
        self.assertTrue(fits(keys))
        self.assertTrue(fits(keys[:-1] + [keys[-1] + "y"]))
        self.assertFalse(fits(keys[:-1] + [keys[-1] + "yz"]))

    def test_within_limits(self):
        c = Collector()
        for pk in (2, 1):
            c.add_instance(Article, pk)
        c.add_models(["blog.tag"])
        c.add("mine")
        self.assertEqual(c.header(["theirs"]), "theirs mine blog.article blog.tag blog.article:1 blog.article:2")

    def test_too_many_instances_fall_back_to_model_keys(self):
        c = Collector()
        for pk in range(300):
            c.add_instance(Article, pk)
        c.add_instance(Tag, 1)
        c.add("mine")
        self.assertEqual(c.header(), "mine blog.article blog.tag")

    @override_settings(USERROUTER_PURGE_MODEL_KEY_ON_UPDATE=["blog.tag"])
    def test_fallback_when_updates_do_not_purge_the_model_key(self):
        c = Collector()
        for pk in range(300):
            c.add_instance(Article, pk)
        c.add_instance(Tag, 1)
        # Tag updates purge blog.tag, which the page has already.
        self.assertEqual(c.header(), "blog.article blog.tag blog.article:*")

    def test_too_many_explicit_keys_overflow(self):
        c = Collector()
        c.add_instance(Article, 1)
        c.add(*["k%d" % i for i in range(MAX_KEYS)])
        self.assertEqual(c.header(), OVERFLOW_KEY)

    def test_too_many_bytes_overflow(self):
        c = Collector()
        c.add_instance(Article, 1)
        c.add(*["k%d-%s" % (i, "x" * 1000) for i in range(17)])
        self.assertEqual(c.header(), OVERFLOW_KEY)

    def test_many_instances_use_bounded_memory(self):
        c = Collector()
        for pk in range(10000):
            c.add_instance(Article, pk)
        self.assertEqual(len(c.instances["blog.article"]), MAX_KEYS + 1)

    def test_multi_table_inheritance_tags_every_parent(self):
        c = Collector()
        c.add_instance(Post, 5)
        self.assertEqual(c.header(), "tests.page tests.post tests.page:5 tests.post:5")

    @override_settings(USERROUTER_PURGE_IGNORE_MODELS=["blog"])
    def test_ignored(self):
        c = Collector()
        c.add_instance(Article, 1)
        c.add_models(["blog.tag", "tests.page"])
        self.assertEqual(c.header(), "tests.page")

    def test_add_rejects_bad_keys(self):
        c = Collector()
        with self.assertRaisesMessage(ValueError, "not a surrogate key"):
            c.add("two words")
        with self.assertRaisesMessage(ValueError, "has no pk"):
            c.add(Article())


class TablesReadTests(SimpleTestCase):
    def test_tables_read(self):
        tests = [
            ("select", 'SELECT "blog_article"."id" FROM "blog_article"', {"blog.article"}),
            (
                "join through m2m",
                'SELECT "blog_tag"."id" FROM "blog_tag" INNER JOIN "blog_article_tags" ON (1)',
                {"blog.tag", "blog.article_tags"},
            ),
            (
                "subquery",
                'SELECT COUNT(*) FROM "blog_tag" WHERE "id" IN (SELECT U0."tag_id" FROM "blog_article_tags" U0)',
                {"blog.tag", "blog.article_tags"},
            ),
            ("raw, unquoted, upper case", "select * from BLOG_ARTICLE a, tests_page", {"blog.article", "tests.page"}),
            ("mysql quoting", "SELECT `blog_article`.`id` FROM `blog_article`", {"blog.article"}),
            ("parenthesised union", '(SELECT 1 FROM "blog_tag") UNION (SELECT 1 FROM "tests_code")', {"blog.tag", "tests.code"}),
            ("cte", 'WITH x AS (SELECT 1 FROM "blog_tag") SELECT * FROM x', {"blog.tag"}),
            ("multi-table inheritance", 'SELECT * FROM "tests_post" INNER JOIN "tests_page"', {"tests.post", "tests.page"}),
            ("insert", 'INSERT INTO "blog_article" ("title") SELECT 1', set()),
            ("update", 'UPDATE "blog_article" SET "title" = %s', set()),
            ("savepoint", 'SAVEPOINT "s1"', set()),
            ("a column named like no table", 'SELECT "title" FROM "nothing"', set()),
            ("long", 'SELECT * FROM "blog_article" WHERE id IN (' + ", ".join(["%s"] * 5000) + ")", {"blog.article"}),
        ]
        for name, sql, want in tests:
            with self.subTest(name):
                self.assertEqual(set(tables_read(sql)), want)


class QueryHookTests(SimpleTestCase):
    def test_connection_opened_inside_an_execute_wrapper_block(self):
        # The block's exit pops the last wrapper: it must be the block's own.
        conn = types.SimpleNamespace(execute_wrappers=[])

        def mine(execute, sql, params, many, context):
            return execute(sql, params, many, context)

        with BaseDatabaseWrapper.execute_wrapper(conn, mine):
            install_query_wrapper(conn)  # connection_created, inside the block
        self.assertEqual(conn.execute_wrappers, [query_wrapper])
