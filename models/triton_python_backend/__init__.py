"""The Triton python-backend model that ``export-triton --python-backend`` writes beside each ``model.pt``.

``model.py`` runs inside Triton's python-backend stub (it imports ``triton_python_backend_utils``, which only
exists there); it is shipped as a file and never imported by slimserve.
"""
