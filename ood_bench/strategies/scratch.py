"""Scratch: random backbone and head, same architecture as the pretrained model when given."""

from .base import STRATEGIES, Strategy


class Scratch(Strategy):
    name = "scratch"
    label = "Scratch"
    summary = "random init of backbone and property head, trained end to end"


STRATEGIES.add("scratch", Scratch())
