"""Purges: which keys, when (after commit, batched), and failures. The purge
API is a real HTTP server (tests.recorder) on 127.0.0.1."""
import contextlib
import os
import socket
import threading
import time
from unittest import mock

from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction
from django.test import TransactionTestCase, override_settings

import userrouter_purge
from blog.models import Article, Tag
from userrouter_purge import OVERFLOW_KEY, batch, purge, send_purge

from .models import Code, Page, PageProxy, Post
from .recorder import Recorder

O = OVERFLOW_KEY


class _Rollback(Exception):
    pass


@contextlib.contextmanager
def rolled_back():
    """A transaction (a savepoint when nested) that an exception rolls back."""
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


class PurgeTestCase(TransactionTestCase):
    def setUp(self):
        self.rec = Recorder()
        self.addCleanup(self.rec.close)
        self.use(USERROUTER_PURGE_URL=self.rec.url)

    def use(self, **settings):
        cm = override_settings(**settings)
        cm.enable()
        self.addCleanup(cm.disable)

    def assertPurges(self, *want):
        """One POST per set in want, with exactly those keys (and the overflow key)."""
        got = [set(b["keys"]) for b in self.rec.bodies()]
        self.assertEqual(got, [set(w) | {O} for w in want])
        self.rec.clear()


class SignalTests(PurgeTestCase):
    def test_create_update_delete(self):
        a = Article.objects.create(title="a")
        k = "blog.article:%d" % a.pk
        self.assertPurges({k, "blog.article"})
        a.title = "b"
        a.save()
        self.assertPurges({k, "blog.article"})
        a.delete()
        self.assertPurges({k, "blog.article", "blog.article_tags"})

    def test_delete_the_other_side_of_a_many_to_many(self):
        t = Tag.objects.create(name="t")
        pk = t.pk
        self.rec.clear()
        t.delete()
        self.assertPurges({"blog.tag:%d" % pk, "blog.tag", "blog.article_tags"})

    def test_update_narrow(self):
        a = Article.objects.create(title="a")
        self.rec.clear()
        for setting in (False, ["blog.tag"]):
            with self.subTest(setting=setting), self.settings(USERROUTER_PURGE_MODEL_KEY_ON_UPDATE=setting):
                a.save()
                self.assertPurges({"blog.article:%d" % a.pk, "blog.article:*"})

    def test_body_and_headers(self):
        Article.objects.create(title="a")
        (r,) = self.rec.requests
        self.assertEqual(r["path"], "/purge")
        self.assertEqual(r["headers"]["Content-Type"], "application/json")
        self.assertNotIn("Authorization", r["headers"])
        self.assertEqual(set(r["body"]), {"urls", "keys", "all", "soft"})
        self.assertEqual((r["body"]["urls"], r["body"]["all"], r["body"]["soft"]), ([], False, False))

    def test_token(self):
        self.use(USERROUTER_PURGE_TOKEN="s3cret")
        Article.objects.create(title="a")
        self.assertEqual(self.rec.requests[0]["headers"]["Authorization"], "Bearer s3cret")

    def test_queryset_delete_sends_per_object(self):
        # With a post_delete receiver Django does not fast-delete: it loads
        # the rows and signals each one.
        a, b = Article.objects.create(title="a"), Article.objects.create(title="b")
        self.rec.clear()
        Article.objects.all().delete()
        self.assertEqual(
            self.rec.keys(),
            {"blog.article:%d" % a.pk, "blog.article:%d" % b.pk, "blog.article", "blog.article_tags", O},
        )

    def test_m2m(self):
        a = Article.objects.create(title="a")
        t1, t2 = Tag.objects.create(name="t1"), Tag.objects.create(name="t2")
        self.rec.clear()
        ka, k1, k2 = "blog.article:%d" % a.pk, "blog.tag:%d" % t1.pk, "blog.tag:%d" % t2.pk
        a.tags.add(t1, t2)
        self.assertPurges({"blog.article_tags", ka, "blog.article", k1, k2, "blog.tag"})
        t1.articles.remove(a)  # the reverse side
        self.assertPurges({"blog.article_tags", ka, "blog.article", k1, "blog.tag"})
        a.tags.add(t2)  # already there: nothing changes, nothing is sent
        self.assertPurges()
        a.tags.clear()
        self.assertPurges({"blog.article_tags", ka, "blog.article", "blog.tag"})

    def test_m2m_narrow(self):
        self.use(USERROUTER_PURGE_MODEL_KEY_ON_UPDATE=False)
        a, t = Article.objects.create(title="a"), Tag.objects.create(name="t")
        self.rec.clear()
        a.tags.add(t)
        self.assertPurges(
            {"blog.article_tags", "blog.article:%d" % a.pk, "blog.article:*", "blog.tag:%d" % t.pk, "blog.tag:*"}
        )
        a.tags.clear()
        self.assertPurges({"blog.article_tags", "blog.article:%d" % a.pk, "blog.article:*", "blog.tag:*"})

    def test_multi_table_inheritance_and_proxy(self):
        p = Post.objects.create(title="t")
        self.assertPurges({"tests.post:%d" % p.pk, "tests.post", "tests.page:%d" % p.pk, "tests.page"})
        PageProxy.objects.get(pk=p.pk).save()
        self.assertPurges({"tests.page:%d" % p.pk, "tests.page"})
        Page.objects.get(pk=p.pk).delete()  # cascades to the child row
        self.assertEqual(
            self.rec.keys(), {"tests.post:%d" % p.pk, "tests.post", "tests.page:%d" % p.pk, "tests.page", O}
        )

    def test_string_pk(self):
        Code.objects.create(code="a b")
        self.assertPurges({"tests.code:a%20b", "tests.code"})

    def test_ignored_models_send_nothing(self):
        s = SessionStore()
        s["x"] = 1
        s.save()
        s.delete()
        with self.settings(USERROUTER_PURGE_IGNORE_MODELS=["blog.article"]):
            Article.objects.create(title="a")
        self.assertPurges()


class TransactionTests(PurgeTestCase):
    def test_one_post_per_transaction_after_commit(self):
        with transaction.atomic():
            a = Article.objects.create(title="a")
            b = Article.objects.create(title="b")
            a.title = "a2"
            a.save()
            self.assertEqual(self.rec.requests, [], "nothing is sent before the commit")
        self.assertPurges({"blog.article:%d" % a.pk, "blog.article:%d" % b.pk, "blog.article"})

    def test_rollback_sends_nothing(self):
        with rolled_back():
            Article.objects.create(title="a")
        self.assertPurges()
        Article.objects.create(title="after")  # a later transaction is not lost with it
        self.assertEqual(len(self.rec.requests), 1)

    def test_savepoint_rollback(self):
        with transaction.atomic():
            Code.objects.create(code="kept")
            with rolled_back():
                Code.objects.create(code="rolled-back")
            with transaction.atomic():
                Code.objects.create(code="inner")
            Code.objects.create(code="after")
        self.assertEqual(self.rec.keys(), {"tests.code:kept", "tests.code:inner", "tests.code:after", "tests.code", O})
        self.assertLessEqual(len(self.rec.requests), 3)

    def test_transactions_in_a_row(self):
        for i in range(3):
            with transaction.atomic():
                Article.objects.create(title="x%d" % i)
                Article.objects.create(title="y%d" % i)
        self.assertEqual(len(self.rec.requests), 3)
        self.assertEqual(len(self.rec.keys()), 6 + 2)

    def test_batch(self):
        with batch():
            for i in range(5):
                Article.objects.create(title="x%d" % i)
            with transaction.atomic():
                Tag.objects.create(name="t")
            with batch():  # joins the outer one
                purge(keys=["mine"])
            self.assertEqual(self.rec.requests, [])
        self.assertEqual(len(self.rec.requests), 1)
        self.assertEqual(len(self.rec.keys()), 5 + 1 + 2 + 1 + 1)

    def test_batch_drops_rolled_back_work(self):
        with batch():
            with rolled_back():
                Article.objects.create(title="x")
        self.assertPurges()


class RequestTests(PurgeTestCase):
    def test_one_post_per_request_before_the_response(self):
        r = self.client.post("/t/write/")
        self.assertEqual(r.status_code, 200)
        (body,) = self.rec.bodies()  # already there when the response came back
        self.assertEqual(len([k for k in body["keys"] if k.startswith("blog.article:")]), 2)

    def test_failed_request_still_sends_committed_purges(self):
        self.client.raise_request_exception = False
        r = self.client.post("/t/fail/")
        self.assertEqual(r.status_code, 500)
        self.assertIn("blog.article", self.rec.keys())

    def test_get_without_changes_sends_nothing(self):
        self.client.get("/articles/")
        self.assertPurges()


class ByHandTests(PurgeTestCase):
    def test_purge(self):
        a = Article.objects.create(title="a")
        self.rec.clear()
        Article.objects.update(title="bulk")  # no signal
        self.assertPurges()
        purge(Article, a, keys=["sidebar"], urls=["https://example.com/a?b=1"])
        self.assertPurges({"blog.article", "blog.article:*", "blog.article:%d" % a.pk, "sidebar"})
        purge(urls=["/x"])
        self.assertEqual(self.rec.bodies(), [{"urls": ["/x"], "keys": [], "all": False, "soft": False}])

    def test_purge_waits_for_the_commit(self):
        with transaction.atomic():
            purge(keys=["k"])
            self.assertEqual(self.rec.requests, [])
        self.assertPurges({"k"})

    def test_bad_arguments(self):
        with self.assertRaisesMessage(ValueError, "not a surrogate key"):
            purge(keys=["two words"])
        with self.assertRaises(TypeError):
            purge("blog.article")
        with self.assertRaisesMessage(TypeError, "write urls=['https://example.com/']"):
            purge(urls="https://example.com/")
        with self.assertRaisesMessage(TypeError, "keys is a list"):
            send_purge(keys="abc")
        with self.assertRaisesMessage(ValueError, "cannot be soft"):
            send_purge(all=True, soft=True)
        with self.assertRaisesMessage(ValueError, "has no pk"):
            purge(Article())
        self.assertPurges()

    def test_send_purge(self):
        self.assertTrue(send_purge(keys=["a"], soft=True))
        self.assertEqual(self.rec.bodies(), [{"urls": [], "keys": ["a", O], "all": False, "soft": True}])
        self.rec.clear()
        # An instance key written by hand brings its model's fallback key.
        self.assertTrue(send_purge(keys=["blog.article:5", "other:5"]))
        self.assertEqual(self.rec.bodies()[0]["keys"], ["blog.article:5", "other:5", "blog.article", O])
        with self.settings(USERROUTER_PURGE_MODEL_KEY_ON_UPDATE=False):
            self.assertTrue(send_purge(keys=["blog.article:5"]))
        self.assertEqual(self.rec.bodies()[1]["keys"], ["blog.article:5", "blog.article:*", O])
        self.rec.clear()
        self.assertTrue(send_purge(all=True))
        self.assertEqual(self.rec.bodies(), [{"urls": [], "keys": [], "all": True, "soft": False}])
        self.rec.clear()
        self.assertTrue(send_purge())
        self.assertPurges()

    def test_large_purges_are_split(self):
        keys = ["key-%d" % i for i in range(25000)]
        self.assertTrue(send_purge(keys=keys))
        bodies = self.rec.bodies()
        self.assertEqual([len(b["keys"]) for b in bodies], [10000, 10000, 5001])
        self.assertEqual(self.rec.keys(), set(keys) | {O})
        self.rec.clear()
        big = ["%d-%s" % (i, "x" * 1000) for i in range(2000)]  # about 2 MB
        self.assertTrue(send_purge(keys=big))
        self.assertGreaterEqual(len(self.rec.requests), 3)
        for r in self.rec.requests:
            self.assertLessEqual(int(r["headers"]["Content-Length"]), 1 << 20)
        self.assertEqual(self.rec.keys(), set(big) | {O})

    def test_package_exports(self):
        for name in userrouter_purge.__all__:
            self.assertTrue(callable(getattr(userrouter_purge, name)) or name.isupper(), name)
        with self.assertRaises(AttributeError):
            userrouter_purge.nope


class FailureTests(TransactionTestCase):
    def closed_port_url(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return "http://127.0.0.1:%d/purge" % port

    def recorder(self, **kwargs):
        rec = Recorder(**kwargs)
        self.addCleanup(rec.close)
        return rec

    def test_unreachable(self):
        with self.settings(USERROUTER_PURGE_URL=self.closed_port_url()):
            with self.assertLogs("userrouter_purge", "ERROR") as logs:
                Article.objects.create(title="a")  # no exception
                self.assertFalse(send_purge(keys=["k"]))
        self.assertIn("did not answer", logs.output[0])
        self.assertIn("stay cached until their TTL", logs.output[0])

    def test_unreachable_in_a_request(self):
        with self.settings(USERROUTER_PURGE_URL=self.closed_port_url()):
            with self.assertLogs("userrouter_purge", "ERROR"):
                r = self.client.post("/t/write/")
        self.assertEqual(r.status_code, 200)

    def test_timeout(self):
        rec = self.recorder(delay=2)
        with self.settings(USERROUTER_PURGE_URL=rec.url, USERROUTER_PURGE_TIMEOUT=0.2):
            start = time.monotonic()
            with self.assertLogs("userrouter_purge", "ERROR") as logs:
                Article.objects.create(title="a")
            self.assertLess(time.monotonic() - start, 1.5)
        self.assertIn("within 0.2s", logs.output[0])

    def test_refused(self):
        for status, hint in [(403, "USERROUTER_PURGE_TOKEN"), (400, "test says 400"), (503, "store"), (404, "admin listener")]:
            with self.subTest(status=status):
                rec = self.recorder(status=status)
                with self.settings(USERROUTER_PURGE_URL=rec.url):
                    with self.assertLogs("userrouter_purge", "ERROR") as logs:
                        self.assertFalse(send_purge(keys=["k"]))
                self.assertIn("refused by", logs.output[0])
                self.assertIn(str(status), logs.output[0])
                self.assertIn(hint, logs.output[0])

    def test_unset_warns_once(self):
        with self.settings(USERROUTER_PURGE_URL=None):
            with self.assertLogs("userrouter_purge", "WARNING") as logs:
                Article.objects.create(title="a")
                Article.objects.create(title="b")
                self.assertFalse(send_purge(keys=["k"]))
        self.assertEqual(len(logs.output), 1)
        self.assertIn("USERROUTER_PURGE_URL is not set", logs.output[0])

    def test_no_proxy(self):
        rec = self.recorder()
        with mock.patch.dict(os.environ, {"http_proxy": self.closed_port_url()}):
            with self.settings(USERROUTER_PURGE_URL=rec.url):
                self.assertTrue(send_purge(keys=["k"]))
        self.assertEqual(len(rec.requests), 1)

    def test_redirect_is_not_followed(self):
        # Followed, it would become a GET carrying the token, and a 200 there
        # would count as a purge done.
        target = self.recorder()
        rec = self.recorder(status=302, headers={"Location": target.url})
        with self.settings(USERROUTER_PURGE_URL=rec.url, USERROUTER_PURGE_TOKEN="s3cret"):
            with self.assertLogs("userrouter_purge", "ERROR") as logs:
                self.assertFalse(send_purge(keys=["k"]))
        self.assertEqual(len(rec.requests), 1)
        self.assertEqual(target.requests, [])
        self.assertIn("302", logs.output[0])

    def test_bad_token_is_not_logged(self):
        rec = self.recorder()
        with self.settings(USERROUTER_PURGE_URL=rec.url, USERROUTER_PURGE_TOKEN="s3cret\n"):
            with self.assertLogs("userrouter_purge", "ERROR") as logs:
                self.assertFalse(send_purge(keys=["k"]))
        self.assertEqual(rec.requests, [])
        self.assertIn("USERROUTER_PURGE_TOKEN", logs.output[0])
        self.assertNotIn("s3cret", "".join(logs.output))

    def test_garbage_answer_is_logged_not_raised(self):
        ls = socket.socket()
        self.addCleanup(ls.close)
        ls.bind(("127.0.0.1", 0))
        ls.listen()

        def answer():
            c, _ = ls.accept()
            with c:
                c.recv(1 << 16)
                c.sendall(b"not http\r\n\r\n")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        with self.settings(USERROUTER_PURGE_URL="http://127.0.0.1:%d/purge" % ls.getsockname()[1]):
            with self.assertLogs("userrouter_purge", "ERROR"):
                self.assertFalse(send_purge(keys=["k"]))
        t.join(5)

    def test_refused_url_does_not_cost_the_keys(self):
        # userrouter refuses a body for one URL it cannot take (a path while
        # it caches several hosts): the keys are sent again on their own.
        rec = self.recorder(status=lambda body: 400 if body["urls"] else 200)
        with self.settings(USERROUTER_PURGE_URL=rec.url):
            with self.assertLogs("userrouter_purge", "ERROR"):
                self.assertFalse(send_purge(keys=["k"], urls=["/feed.xml"]))
        self.assertEqual([(b["urls"], b["keys"]) for b in rec.bodies()], [(["/feed.xml"], ["k", O]), ([], ["k", O])])


class ChecksTests(TransactionTestCase):
    def test_checks(self):
        from userrouter_purge.checks import check_settings

        self.assertEqual(check_settings(None), [])
        tests = [
            ({"MIDDLEWARE": []}, "userrouter_purge.W001"),
            ({"MIDDLEWARE": ["django.middleware.common.CommonMiddleware", "userrouter_purge.middleware.SurrogateKeyMiddleware"]}, "userrouter_purge.W002"),
            ({"USERROUTER_PURGE_URL": "127.0.0.1:8091/purge"}, "userrouter_purge.E001"),
            ({"USERROUTER_SURROGATE_KEY_HEADER": "Surrogate Key"}, "userrouter_purge.E002"),
            ({"USERROUTER_PURGE_TOKEN": "s3cret\n"}, "userrouter_purge.E003"),
            ({"USERROUTER_PURGE_TIMEOUT": None}, "userrouter_purge.E004"),
        ]
        for settings, want in tests:
            with self.subTest(want), self.settings(**settings):
                self.assertEqual([m.id for m in check_settings(None)], [want])
