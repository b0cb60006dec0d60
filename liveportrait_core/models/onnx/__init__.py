"""The ONNX Runtime backend: the four big networks exported to ONNX and run by ONNX Runtime.

``export.py`` writes the ONNX files beside the weights (``<models>/onnx/<variant>/``), tagged with the
weights' hash and the exporter versions, and re-exports them when either changes; ``runtime.py`` opens
them with an ordered list of execution providers (TensorRT, CUDA, DirectML, CoreML, OpenVINO, CPU),
reports which provider runs each network, and offers the same ``run(name, ...)`` contract as
``models/loader.LivePortraitModels``; ``choice.py`` picks, per network, the fastest CPU form by
measurement (``model.backend: auto``). The backend only changes how a network is called: the driving
maths, the crops and the paste-back are the same for every backend.
"""
