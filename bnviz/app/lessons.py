"""The lessons, in teaching order and grouped by section: navigation, titles, the home page's
map and the tests read this.

A lesson is named by one stem, from which everything else follows: its URL slug
(``learning_rate`` -> ``/learning-rate``), its page ``app_pages/<stem>.py``, its experiment
``bnviz/experiments/<stem>.py`` (exporting ``EXPERIMENT`` with that name), its figures
``bnviz/figures/<stem>.py`` and its tests ``tests/lessons/test_<stem>.py`` and
``tests/pages/test_<stem>.py``. ``app.py`` draws the title; the page writes only its lead.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS = (
    "Start",
    "The problem",
    "How BN works",
    "What BN buys",
    "Is ICS the reason?",
    "Other normalizers",
)


@dataclass(frozen=True)
class Lesson:
    stem: str
    title: str
    section: str
    icon: str
    summary: str
    nav: str = ""  # a shorter name for the sidebar, where long titles are cut off

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {SECTIONS}; got {self.section!r}")

    @property
    def slug(self) -> str:
        return self.stem.replace("_", "-")

    @property
    def path(self) -> str:
        return f"app_pages/{self.stem}.py"

    @property
    def nav_title(self) -> str:
        return self.nav or self.title

    @property
    def is_home(self) -> bool:
        return self.stem == "home"


LESSONS = (
    Lesson(
        "home",
        "Internal covariate shift, visualized",
        "Start",
        ":material/home:",
        "Start here: what this app shows and why.",
        nav="Home",
    ),
    Lesson(
        "covariate_shift",
        "Covariate shift and batches",
        "The problem",
        ":material/shuffle:",
        "A trained net meets moved inputs; two very different batches reach one hidden layer; "
        "class-sorted batches make training bounce, and BN's batch statistics jump with them.",
        nav="Covariate shift",
    ),
    Lesson(
        "drift",
        "Distribution drift",
        "The problem",
        ":material/animation:",
        "Watch every hidden layer's input distribution move during training, plain vs BN, "
        "in two real networks trained side by side (the paper's Figure 1, live).",
    ),
    Lesson(
        "bn_steps",
        "BN step by step (Algorithm 1)",
        "How BN works",
        ":material/stairs:",
        "Algorithm 1's four lines on a real mini-batch: μ, σ², x̂, y; what γ and β can undo; "
        "the sigmoid's linear regime; standardize vs whiten; per unit vs per channel.",
        nav="BN step by step",
    ),
    Lesson(
        "backprop",
        "Backprop through BN",
        "How BN works",
        ":material/account_tree:",
        "The chain rule through μ and σ² on your own batch, checked live against finite "
        "differences and PyTorch; why the gradient has no mean or scale component.",
    ),
    Lesson(
        "inference",
        "Training vs inference (Algorithm 2)",
        "How BN works",
        ":material/deployed_code:",
        "Running averages and the paper's population statistics, BN folded into one affine map, "
        "and the classic bug: predicting with batch statistics.",
        nav="Training vs inference",
    ),
    Lesson(
        "learning_rate",
        "Learning rate: why BN lets you go faster",
        "What BN buys",
        ":material/speed:",
        "Give each net its own learning rate and push BN far past where the plain net dies; "
        "sweep the rate and the initial scale in seconds.",
        nav="Learning rate",
    ),
    Lesson(
        "scale",
        "Scale invariance and gamma/beta",
        "What BN buys",
        ":material/straighten:",
        "BN(aWu) = BN(Wu): larger weights get smaller gradients, the effective learning rate "
        "falls by itself, and gamma and beta take over a unit's scale and offset.",
    ),
    Lesson(
        "debate",
        "Why does BN work? The debate",
        "Is ICS the reason?",
        ":material/forum:",
        "Test both stories on the same nets: noisy BN that shifts its distributions on "
        "purpose, internal covariate shift measured as gradient change, and the loss "
        "landscape along the gradient.",
        nav="The debate",
    ),
    Lesson(
        "variants",
        "Variants and pitfalls",
        "Other normalizers",
        ":material/tune:",
        "BN, LayerNorm and GroupNorm trained at batch sizes 2 to 64; dropout's variance shift "
        "measured against Li et al.'s formula; why BN fails at batch size 1 and in RNNs.",
        nav="Variants and pitfalls",
    ),
)
BY_STEM = {lesson.stem: lesson for lesson in LESSONS}
BY_SLUG = {lesson.slug: lesson for lesson in LESSONS}


def by_section() -> dict[str, list[Lesson]]:
    """Lessons grouped by section, in teaching order; sections with no lesson yet are absent."""
    out: dict[str, list[Lesson]] = {}
    for section in SECTIONS:
        members = [lesson for lesson in LESSONS if lesson.section == section]
        if members:
            out[section] = members
    return out
