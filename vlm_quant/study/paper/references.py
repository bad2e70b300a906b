"""The bibliography the generated paper cites (written to ``references.bib``).

Only works the generated text actually relies on: the data set, the metric, the quantization
methods of the presets, the bootstrap, and the carbon accounting. Entries the text does not cite
are ignored by BibTeX, so the list can stay fixed.
"""

BIBTEX = r"""@inproceedings{lin2014coco,
  title     = {Microsoft {COCO}: Common Objects in Context},
  author    = {Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and Perona, Pietro and
               Ramanan, Deva and Doll{\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2014}
}

@inproceedings{vedantam2015cider,
  title     = {{CIDEr}: Consensus-based Image Description Evaluation},
  author    = {Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2015}
}

@inproceedings{antol2015vqa,
  title     = {{VQA}: Visual Question Answering},
  author    = {Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and
               Batra, Dhruv and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year      = {2015}
}

@inproceedings{dettmers2022llmint8,
  title     = {{LLM.int8()}: 8-bit Matrix Multiplication for Transformers at Scale},
  author    = {Dettmers, Tim and Lewis, Mike and Belkada, Younes and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2022}
}

@inproceedings{dettmers2023qlora,
  title     = {{QLoRA}: Efficient Finetuning of Quantized {LLMs}},
  author    = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2023}
}

@book{efron1993bootstrap,
  title     = {An Introduction to the Bootstrap},
  author    = {Efron, Bradley and Tibshirani, Robert J.},
  publisher = {Chapman \& Hall},
  year      = {1993}
}

@article{lacoste2019quantifying,
  title     = {Quantifying the Carbon Emissions of Machine Learning},
  author    = {Lacoste, Alexandre and Luccioni, Alexandra and Schmidt, Victor and Dandres, Thomas},
  journal   = {arXiv preprint arXiv:1910.09700},
  year      = {2019}
}
"""
