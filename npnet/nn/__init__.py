"""Layers with explicit forward and backward passes."""
from .module import Module, Parameter
from .container import Sequential
