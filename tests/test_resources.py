"""docs/resources.md: every glossary term is defined once, in alphabetical order; links are well-formed."""

import re
from urllib.parse import urlsplit

from conftest import DOCS

PAGE = (DOCS / "resources.md").read_text(encoding="utf-8")
GLOSSARY = PAGE.split("## Glossary", 1)[1].split("\n## ", 1)[0]
# A definition list entry: a **term** on its own line, then ":   definition" (continued by indented lines).
ENTRY = re.compile(r"^\*\*(?P<term>[^*\n]+)\*\*\n:   (?P<definition>[^\n]*(?:\n    [^\n]*)*)", re.M)
REQUIRED = [
    "tensor",
    "gradient",
    "logit",
    "epoch",
    "batch",
    "learning rate",
    "overfitting",
    "activation function",
    "loss",
    "optimizer",
    "backpropagation",
    "parameter",
    "hyperparameter",
    "softmax",
    "neuron",
    "hidden layer",
    "weight",
    "bias",
    "device",
    "inference",
    "autograd",
    "dtype",
    "state dict",
]


def glossary():
    return {m["term"].strip(): " ".join(m["definition"].split()) for m in ENTRY.finditer(GLOSSARY)}


def test_every_required_term_is_defined():
    terms = {term.lower() for term in glossary()}
    assert not [term for term in REQUIRED if term not in terms]


def test_terms_are_unique_and_in_alphabetical_order_as_the_page_says():
    terms = [m["term"].strip() for m in ENTRY.finditer(GLOSSARY)]
    assert len(terms) == len(set(terms)) >= 30
    assert terms == sorted(terms, key=str.lower)


def test_every_definition_is_a_real_sentence():
    for term, definition in glossary().items():
        assert len(definition) >= 60, term
        assert definition[0].isupper() or definition[0] in "`(", term
        assert definition.rstrip(")").endswith("."), term


def test_no_definition_repeats_the_misconceptions_the_guide_corrects():
    definitions = glossary()
    assert "not an on/off signal" in definitions["Neuron"]
    assert "learned" in definitions["Hidden layer"]


def test_external_links_are_well_formed_https():
    urls = re.findall(r"\]\((https?://[^)\s]+)\)", PAGE)
    assert len(urls) >= 12
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme == "https", url
        assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", parts.netloc), url


def test_internal_links_point_at_pages_that_exist():
    for target in re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", PAGE):
        assert (DOCS / target).exists(), target
