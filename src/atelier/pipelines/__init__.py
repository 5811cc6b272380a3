"""The framework layer under the methods: what several methods share.

* :mod:`atelier.pipelines.base`: the ``Method`` interface, its config base and the method registry.
* :mod:`atelier.pipelines.feedforward`: encoder -> transform -> decoder methods (AdaIN, WCT, ...):
  blending, tiling, the style memo, the memory budget and loading of their trained networks.
* :mod:`atelier.pipelines.translation`: image-to-image translation (CycleGAN, U-GAT-IT): the
  generator-pair :class:`~atelier.pipelines.translation.Translator` and the two-phase GAN training task.

A method module (:mod:`atelier.methods`) holds one paper: its config with the paper's defaults,
its transform and its training losses; it imports from here and never from another method module.
"""
