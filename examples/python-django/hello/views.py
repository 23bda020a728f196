from django.http import HttpResponse

from .message import MESSAGE


def index(request):
    return HttpResponse(MESSAGE + "\n", content_type="text/plain")
