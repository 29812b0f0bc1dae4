from .mutual import MicroNetImageClassifier, MutualLearningClassifier

__all__ = ['MicroNetImageClassifier', 'MutualLearningClassifier']
