"""The lesson pages, in teaching order: navigation, the home page's map and the tests read this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    slug: str
    title: str
    icon: str
    path: str
    summary: str
    nav: str = ""  # a shorter name for the sidebar, where long titles are cut off

    @property
    def nav_title(self) -> str:
        return self.nav or self.title


LESSONS = (
    Lesson(
        "home",
        "Internal covariate shift, visualized",
        ":material/home:",
        "app_pages/home.py",
        "Start here: what this app shows and why.",
        nav="Home",
    ),
    Lesson(
        "drift",
        "Distribution drift",
        ":material/animation:",
        "app_pages/drift.py",
        "Watch every hidden layer's input distribution move during training, plain vs BN, "
        "in two real networks trained side by side (the paper's Figure 1, live).",
    ),
    Lesson(
        "learning-rate",
        "Learning rate: why BN lets you go faster",
        ":material/speed:",
        "app_pages/learning_rate.py",
        "Give each net its own learning rate and push BN far past where the plain net dies; "
        "sweep the rate and the initial scale in seconds.",
        nav="Learning rate",
    ),
    Lesson(
        "scale",
        "Scale invariance and gamma/beta",
        ":material/straighten:",
        "app_pages/scale.py",
        "BN(aWu) = BN(Wu): larger weights get smaller gradients, the effective learning rate "
        "falls by itself, and gamma and beta take over a unit's scale and offset.",
    ),
)
