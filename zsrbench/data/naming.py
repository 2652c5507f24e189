"""Class names of the tga16 datasets: the rules that turn a dataset's own labels into the names in prompts.

The tga16 protocol is the one of the TeCoA → PMG-AFT → TGA-ZSR code line, so the names follow the TGA-ZSR
reference code (github.com/zhyblue424/TGA-ZSR, ``utils.py`` and ``replace/datasets/*.py``):

- Datasets prompted with "This is a photo of a {}" (Tiny-ImageNet, CIFAR-10/100, STL-10, SUN397, Caltech-101)
  take the dataset's class names, lower-cased, with "_", "-" and "/" replaced by spaces (``refine_classname``).
- Datasets with their own template (Food101, Pets, Flowers102, DTD, EuroSAT, Caltech-256, Stanford Cars)
  lower-case and replace "_" and "-" (not "/"); FGVC-Aircraft replaces only "_" (so "boeing 737-200").
- Tiny-ImageNet's names are the first lemma of each wnid's entry in the dataset's ``words.txt`` (what the
  reference's ``tinyimagenet_classes_name.txt`` lists, e.g. "n02509815 lesser_panda").
- ImageNet uses the class names OpenAI curated for CLIP (a data file, ``classnames/imagenet.txt``) verbatim.
  (The reference code instead maps wnids through an ``imagenet_classes_names.txt`` it does not publish.)

Runs of spaces are collapsed and ends stripped in every rule (the reference does not; it only matters for two
Flowers102 names that carry a trailing space in the reference list).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

REFINE = "_-/"  # reference utils.refine_classname
PROMPT_CHARS = "_-"  # reference datasets' clip_prompts
AIRCRAFT_CHARS = "_"  # reference FGVCAircraft.clip_prompts

# EuroSAT folder name -> the descriptive phrase of the CLIP/TGA-ZSR EuroSAT prompts (in sorted folder order).
EUROSAT_PHRASES: dict[str, str] = {
    "AnnualCrop": "annual crop land",
    "Forest": "a forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "a highway or a road",
    "Industrial": "industrial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings",
    "River": "a river",
    "SeaLake": "a sea or a lake",
}

# PCAM: label 0 = no metastatic tissue, 1 = metastatic tissue. The reference spells the first "Tthis is ...";
# the protocol uses the corrected text.
PCAM_CLASSNAMES = ("healthy lymph node tissue", "lymph node tumor tissue")
PCAM_PROMPTS = (
    "This is a photo of healthy lymph node tissue.",
    "This is a photo of lymph node tumor tissue.",
)

# STL-10's class_names.txt (used when the file is absent; the STL-10 binaries store labels 1..10 in this order).
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def normalise(name: str, chars: str = REFINE) -> str:
    """Lower-case ``name``, replace each of ``chars`` by a space and collapse runs of spaces."""
    out = name.lower()
    for ch in chars:
        out = out.replace(ch, " ")
    return " ".join(out.split())


def first_lemma(words: str) -> str:
    """``"teddy, teddy bear"`` -> ``"teddy"`` (a WordNet ``words.txt`` entry lists synonyms, commas between)."""
    return words.split(",")[0].strip()


def aircraft_name(variant: str) -> str:
    """FGVC-Aircraft variant -> prompt name: "Boeing " before the 7xx variants, lower-cased, "_" -> " "."""
    name = f"Boeing {variant}" if variant.startswith("7") else variant
    return normalise(name, AIRCRAFT_CHARS)


_YEAR = re.compile(r"\s+(19|20)\d\d$")


def car_name(class_name: str) -> str:
    """Stanford Cars class -> prompt name: drop the trailing model year ("... Sedan 2012"), then normalise."""
    return normalise(_YEAR.sub("", class_name.strip()), PROMPT_CHARS)


def caltech256_name(folder: str) -> str:
    """``"063.electric-guitar-101"`` -> ``"electric guitar"``: drop the "NNN." prefix and the "-101" suffix."""
    name = folder.split(".", 1)[1] if re.match(r"^\d{3}\.", folder) else folder
    return normalise(name.replace("-101", ""), PROMPT_CHARS)


def sun397_class(line: str) -> str:
    """A ``ClassName.txt`` line ``"/b/bakery/shop"`` -> the class path ``"bakery/shop"`` (as torchvision)."""
    return line.strip()[3:]


def read_words(path: Path, wnids: Iterable[str]) -> dict[str, str]:
    """First lemma of each wanted wnid in a ``words.txt``/``LOC_synset_mapping.txt``-style file."""
    wanted = set(wnids)
    names: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            wnid, _, words = line.strip().replace("\t", " ", 1).partition(" ")
            if wnid in wanted and wnid not in names:
                names[wnid] = first_lemma(words)
    return names


def _data_lines(filename: str) -> list[str]:
    text = resources.files("zsrbench.data").joinpath("classnames").joinpath(filename).read_text(encoding="utf-8")
    return [ln.rstrip("\n") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@lru_cache(maxsize=None)
def flowers102_classes() -> tuple[str, ...]:
    """The 102 Flowers102 names in label order, as listed in ``classnames/flowers102.txt``."""
    return tuple(ln.strip() for ln in _data_lines("flowers102.txt"))


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``(wnid, CLIP class name)`` for the 1000 ImageNet classes in class-index order (``imagenet.txt``)."""
    rows = [ln.split("\t") for ln in _data_lines("imagenet.txt")]
    return tuple((wnid.strip(), name.strip()) for wnid, name in rows)
