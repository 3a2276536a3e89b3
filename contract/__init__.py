"""The registry contract: the only code that ``models/`` (which writes a registry) and ``service/`` (which
reads one) share. A card change here fails both halves at once instead of breaking one at load time.

    <registry>/<family>-<variant>/config.pbtxt          derived from the card (contract.triton_config)
    <registry>/<family>-<variant>/<version>/<artifact>   model.pt | model.onnx | model.xml + model.bin
    <registry>/<family>-<variant>/<version>/card.json    the model card (contract.card)
"""
