"""Models that exercise the corners of key building: multi-table
inheritance, a proxy, a string primary key."""
from django.db import models


class Page(models.Model):
    title = models.CharField(max_length=100)


class Post(Page):  # multi-table inheritance: rows in tests_page and tests_post
    body = models.TextField(blank=True)


class PageProxy(Page):
    class Meta:
        proxy = True


class Code(models.Model):
    code = models.CharField(primary_key=True, max_length=2000)
