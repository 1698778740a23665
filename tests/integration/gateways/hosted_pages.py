"""A small browser for the simulators' hosted pages: finds the form, presses a button,
follows the gateway's redirect (or auto-submitting form) back to our side."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (name, value)


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[Form] = []
        self._button: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "radio" and "checked" not in a:
                return
            self.forms[-1].inputs[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self._button = {"name": a.get("name", ""), "value": a.get("value", ""), "label": ""}

    def handle_data(self, data):
        if self._button is not None:
            self._button["label"] += data

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None and self.forms:
            b = self._button
            self.forms[-1].buttons[b["label"].strip()] = (b["name"], b["value"])
            self._button = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


class Browser:
    def __init__(self):
        self.client = httpx.Client(follow_redirects=False, timeout=5)

    def close(self):
        self.client.close()

    def page(self, url: str) -> tuple[str, Form]:
        response = self.client.get(url)
        assert response.status_code == 200, f"hosted page answered {response.status_code}"
        (form,) = forms(response.text)
        return response.text, form

    def press(self, url: str, label: str, **fields) -> httpx.Response:
        """Open the hosted page at ``url`` and press the button labelled ``label``."""
        _, form = self.page(url)
        assert label in form.buttons, f"no {label!r} button; have {sorted(form.buttons)}"
        name, value = form.buttons[label]
        data = {**form.inputs, **fields, name: value}
        return self.client.post(urljoin(url, form.action), data=data)

    def back_to_merchant(self, response: httpx.Response) -> dict[str, str]:
        """Follow the gateway's way back to us; returns the parameters our side received."""
        if response.status_code in (301, 302, 303):
            location = response.headers["location"]
            self.client.get(location)
            return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
        assert response.status_code == 200, response.status_code
        (form,) = forms(response.text)
        assert form.method == "post"
        self.client.post(form.action, data=form.inputs)
        return dict(form.inputs)
