"""The bibliography the generated paper cites (written to ``references.bib``).

Only works the generated text actually relies on: the data set, the metric, the quantization
methods whose layers can run (`citations` picks those that did, from the precision audit), the
bootstrap, and the carbon accounting. Entries the text does not cite are ignored by BibTeX, so the
list can stay fixed.
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

@misc{or2025torchao,
  title         = {{TorchAO}: {PyTorch}-Native Training-to-Serving Model Optimization},
  author        = {Or, Andrew and Jain, Apurva and Vega-Myhre, Daniel and Cai, Jesse and
                   Hernandez, Charles David and Zheng, Zhenrui and Guessous, Driss and Kuznetsov, Vasiliy and
                   Puhrsch, Christian and Saroufim, Mark and Rao, Supriya and Tran, Thien and
                   Samard{\v{z}}i{\'c}, Aleksandar},
  year          = {2025},
  eprint        = {2507.16099},
  archivePrefix = {arXiv},
  note          = {arXiv:2507.16099}
}

@misc{onnxruntime,
  title        = {{ONNX Runtime}},
  author       = {{ONNX Runtime developers}},
  year         = {2021},
  howpublished = {\url{https://onnxruntime.ai/}}
}

@inproceedings{cheng2023autoround,
  title     = {Optimize Weight Rounding via Signed Gradient Descent for the Quantization of {LLMs}},
  author    = {Cheng, Wenhua and Zhang, Weiwei and Shen, Haihao and Cai, Yiyang and He, Xin and Lv, Kaokao and
               Liu, Yi},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2024},
  year      = {2024},
  note      = {arXiv:2309.05516}
}

@inproceedings{frantar2023gptq,
  title     = {{GPTQ}: Accurate Post-Training Quantization for Generative Pre-trained Transformers},
  author    = {Frantar, Elias and Ashkboos, Saleh and Hoefler, Torsten and Alistarh, Dan},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2023},
  note      = {arXiv:2210.17323}
}

@inproceedings{lin2024awq,
  title     = {{AWQ}: Activation-aware Weight Quantization for On-Device {LLM} Compression and Acceleration},
  author    = {Lin, Ji and Tang, Jiaming and Tang, Haotian and Yang, Shang and Chen, Wei-Ming and
               Wang, Wei-Chen and Xiao, Guangxuan and Dang, Xingyu and Gan, Chuang and Han, Song},
  booktitle = {Proceedings of Machine Learning and Systems (MLSys)},
  year      = {2024},
  note      = {arXiv:2306.00978}
}

@inproceedings{xiao2023smoothquant,
  title     = {{SmoothQuant}: Accurate and Efficient Post-Training Quantization for Large Language Models},
  author    = {Xiao, Guangxuan and Lin, Ji and Seznec, Mickael and Wu, Hao and Demouth, Julien and Han, Song},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2023},
  note      = {arXiv:2211.10438}
}

@misc{llmcompressor2024,
  title        = {{LLM Compressor}},
  author       = {{vLLM Project}},
  year         = {2024},
  howpublished = {\url{https://github.com/vllm-project/llm-compressor}}
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
