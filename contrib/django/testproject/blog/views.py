from django.shortcuts import get_object_or_404, render

from .models import Article, Tag


def article_list(request):
    """Published articles. With none, the page still carries the key
    blog.article (its query read the table), so the first article purges it."""
    return render(request, "blog/article_list.html", {"articles": Article.objects.filter(published=True)})


def article_detail(request, pk):
    """One published article, with its tags; 404 (cacheable) otherwise."""
    article = get_object_or_404(Article, pk=pk, published=True)
    return render(request, "blog/article_detail.html", {"article": article, "tags": article.tags.all()})


def tag_detail(request, name):
    """The published articles with a tag (empty until one is tagged)."""
    tag = get_object_or_404(Tag, name=name)
    return render(request, "blog/tag_detail.html", {"tag": tag, "articles": tag.articles.filter(published=True)})
