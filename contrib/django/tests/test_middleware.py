"""The Surrogate-Key header on real responses, through the middleware."""
import threading

from asgiref.sync import sync_to_async

from django.test import TestCase, override_settings

from blog.models import Article, Tag
from userrouter_purge import OVERFLOW_KEY, keys

from .models import Post


def header_keys(response, name="Surrogate-Key"):
    return response[name].split(" ") if response.has_header(name) else []


class HeaderTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.a1 = Article.objects.create(title="first")
        cls.a2 = Article.objects.create(title="second")
        cls.draft = Article.objects.create(title="draft", published=False)
        cls.go = Tag.objects.create(name="go")
        cls.a1.tags.add(cls.go)

    def test_list(self):
        r = self.client.get("/articles/")
        self.assertContains(r, "second")
        self.assertEqual(
            header_keys(r), ["blog.article", "blog.article:%d" % self.a1.pk, "blog.article:%d" % self.a2.pk]
        )

    def test_detail_with_tags(self):
        r = self.client.get("/articles/%d/" % self.a1.pk)
        self.assertContains(r, "first")
        self.assertEqual(
            set(header_keys(r)),
            {"blog.article", "blog.article:%d" % self.a1.pk, "blog.tag", "blog.tag:%d" % self.go.pk, "blog.article_tags"},
        )

    def test_empty_list(self):
        Article.objects.all().delete()
        r = self.client.get("/articles/")
        self.assertContains(r, "No articles yet")
        self.assertEqual(header_keys(r), ["blog.article"])

    def test_empty_tag_page_carries_the_through_table(self):
        Tag.objects.create(name="empty")
        r = self.client.get("/tags/empty/")
        self.assertContains(r, "No articles yet")
        self.assertIn("blog.article_tags", header_keys(r))
        self.assertIn("blog.article", header_keys(r))

    def test_404_carries_the_model_key(self):
        # A draft's page is a cacheable 404; publishing it purges blog.article.
        r = self.client.get("/articles/%d/" % self.draft.pk)
        self.assertEqual(r.status_code, 404)
        self.assertEqual(header_keys(r), ["blog.article"])
        r = self.client.get("/tags/nope/")
        self.assertEqual(header_keys(r), ["blog.tag"])

    def test_count_without_instances(self):
        r = self.client.get("/t/count/")
        self.assertContains(r, "2 articles")
        self.assertEqual(header_keys(r), ["blog.article"])

    def test_head(self):
        r = self.client.head("/articles/")
        self.assertIn("blog.article", header_keys(r))

    def test_post_is_not_tagged(self):
        r = self.client.post("/t/write/")
        self.assertEqual(r.status_code, 200)
        self.assertFalse(r.has_header("Surrogate-Key"))

    def test_streaming_gets_the_overflow_key(self):
        r = self.client.get("/t/stream/")
        self.assertEqual(b"".join(r.streaming_content), b"firstseconddraft")
        self.assertEqual(header_keys(r), [OVERFLOW_KEY])

    def test_existing_header_is_kept(self):
        r = self.client.get("/t/existing/")
        self.assertEqual(header_keys(r)[:3], ["mine", "other", "third"])
        self.assertIn("blog.article:%d" % self.a1.pk, header_keys(r))

    def test_explicit_keys(self):
        r = self.client.get("/t/explicit/")
        self.assertEqual(header_keys(r), ["on-response", "sidebar", "blog.article"])
        r = self.client.get("/t/decorated/7/")
        self.assertEqual(header_keys(r), ["static-key", "dyn:7"])

    def test_many_objects_fall_back_to_the_model_key(self):
        Article.objects.bulk_create([Article(title="a%d" % i) for i in range(300)])
        r = self.client.get("/articles/")
        self.assertContains(r, "a299")
        self.assertEqual(header_keys(r), ["blog.article"])

    @override_settings(USERROUTER_PURGE_MODEL_KEY_ON_UPDATE=False)
    def test_many_objects_narrow_mode(self):
        Article.objects.bulk_create([Article(title="a%d" % i) for i in range(300)])
        r = self.client.get("/articles/")
        self.assertEqual(header_keys(r), ["blog.article", "blog.article:*"])

    def test_keys_over_the_limits_overflow(self):
        for n, size in [(300, 1), (20, 1000)]:
            with self.subTest(n=n, size=size):
                r = self.client.get("/t/many-keys/%d/%d/" % (n, size))
                self.assertEqual(header_keys(r), [OVERFLOW_KEY])
        r = self.client.get("/t/many-keys/10/1000/")
        self.assertEqual(len(header_keys(r)), 10 + 1 + 3)  # explicit, blog.article, 3 articles
        self.assertLessEqual(len(r["Surrogate-Key"]), 16 << 10)

    def test_ignored_models(self):
        r = self.client.get("/t/session/", HTTP_COOKIE="sessionid=abcdefghijklmnopqrstuvwxyz012345")
        self.assertEqual(r.status_code, 200)
        self.assertFalse(r.has_header("Surrogate-Key"), r.get("Surrogate-Key"))

    def test_multi_table_inheritance(self):
        p = Post.objects.create(title="t", body="b")
        c = keys.Collector()
        token = keys._current.set(c)
        try:
            list(Post.objects.all())
        finally:
            keys._current.reset(token)
        self.assertEqual(c.header(), "tests.page tests.post tests.page:%d tests.post:%d" % (p.pk, p.pk))

    @override_settings(USERROUTER_SURROGATE_KEY_QUERIES=False)
    def test_queries_hook_off(self):
        r = self.client.get("/articles/")
        self.assertEqual(
            header_keys(r), ["blog.article", "blog.article:%d" % self.a1.pk, "blog.article:%d" % self.a2.pk]
        )
        Article.objects.all().delete()
        r = self.client.get("/articles/")
        self.assertFalse(r.has_header("Surrogate-Key"), "without the hook an empty list has no key")

    @override_settings(USERROUTER_SURROGATE_KEY_HEADER="xkey")
    def test_header_name(self):
        r = self.client.get("/articles/")
        self.assertFalse(r.has_header("Surrogate-Key"))
        self.assertIn("blog.article", header_keys(r, "xkey"))

    def test_no_collection_outside_requests(self):
        self.assertIsNone(keys.current())
        list(Article.objects.all())
        self.assertIsNone(keys.current())


class AsyncTests(TestCase):
    async def test_async_view(self):
        a = await sync_to_async(Article.objects.create)(title="x")
        r = await self.async_client.get("/t/async/")
        self.assertEqual(r.content, b"x")
        self.assertEqual(header_keys(r), ["blog.article", "blog.article:%d" % a.pk])


class IsolationTests(TestCase):
    def test_threads_do_not_share_a_collector(self):
        barrier = threading.Barrier(2, timeout=5)
        headers = {}

        def request(pk):
            token = keys.begin()
            try:
                Article(pk=pk, title="t")
                barrier.wait()
                Article(pk=pk + 100, title="t")
                barrier.wait()
                headers[pk] = keys.current().header()
            finally:
                keys.end(token)

        threads = [threading.Thread(target=request, args=(pk,)) for pk in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(headers[1], "blog.article blog.article:1 blog.article:101")
        self.assertEqual(headers[2], "blog.article blog.article:102 blog.article:2")
