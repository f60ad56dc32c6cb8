"""``python manage.py plan FILE.json``: the plan preview from a file of facts (docs/plan-preview.md).

Prints the same JSON as ``POST /api/v1/plan/preview``; stores nothing. Bad input exits with
code 2 and names the field on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from scheduling.rules import preview
from scheduling.rules.errors import RuleInputError


class Command(BaseCommand):
    help = "Compute the plan for the facts in FILE.json (or - for stdin) and print it as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON facts; - reads stdin")
        parser.add_argument("--lang", choices=["fr", "en"], default="fr", help="language of the messages")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        except OSError as exc:
            self._fail("file", f"cannot read {path}: {exc.strerror}")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            self._fail("body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        try:
            body = preview.preview(data, lang=options["lang"])
        except RuleInputError as exc:
            self._fail(exc.field, exc.message)
        self.stdout.write(json.dumps(body, ensure_ascii=False, indent=2))

    def _fail(self, field: str, message: str) -> None:
        self.stderr.write(json.dumps({"field": field, "detail": message}, ensure_ascii=False))
        sys.exit(2)
