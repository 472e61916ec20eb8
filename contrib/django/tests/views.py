from asgiref.sync import sync_to_async
from django.contrib.contenttypes.models import ContentType
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from blog.models import Article
from userrouter_purge import add_surrogate_keys, surrogate_keys


def count(request):
    """A page that constructs no instance: a count."""
    return HttpResponse("%d articles" % Article.objects.filter(published=True).count())


def stream(request):
    return StreamingHttpResponse(a.title for a in Article.objects.all())


def existing(request):
    r = HttpResponse(", ".join(a.title for a in Article.objects.all()))
    r["Surrogate-Key"] = "mine other,third"
    return r


def explicit(request):
    add_surrogate_keys(request, "sidebar", Article)
    r = HttpResponse("x")
    add_surrogate_keys(r, "on-response")
    return r


@surrogate_keys("static-key", lambda request, pk: ["dyn:%d" % pk])
def decorated(request, pk):
    return HttpResponse("x")


def many_keys(request, n, size):
    """n explicit keys of size bytes each, and the article list."""
    add_surrogate_keys(request, *["k%d-%s" % (i, "x" * size) for i in range(n)])
    return HttpResponse(", ".join(a.title for a in Article.objects.all()))


def session(request):
    """Touches ignored models (sessions, content types)."""
    request.session.get("x")
    ContentType.objects.get_for_model(Article)
    return HttpResponse("x")


@csrf_exempt
def write(request):
    """Creates two articles and updates one, in autocommit mode."""
    a = Article.objects.create(title="w1")
    Article.objects.create(title="w2")
    a.title = "w1b"
    a.save()
    return HttpResponse("ok")


@csrf_exempt
def fail(request):
    """Saves, then fails: the committed save is still purged."""
    Article.objects.create(title="before the failure")
    raise RuntimeError("boom")


async def async_list(request):
    titles = await sync_to_async(lambda: [a.title for a in Article.objects.all()])()
    return HttpResponse(", ".join(titles))
