# MicroNet-M3 trained with a full-rank partner (mutual learning, arXiv v1 §5.1): the switch
# is the model type. The partner (MicroNet(full_rank=True), same widths, ordinary pointwise and
# kxk depthwise convolutions) and the two KL terms only exist in training.
_base_ = './micronet-m3_8xb64_in1k.py'

model = dict(type='MutualLearningClassifier', kl_weight=1.0, temperature=1.0)
