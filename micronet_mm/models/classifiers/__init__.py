from .mutual import MutualLearningClassifier

__all__ = ['MutualLearningClassifier']
