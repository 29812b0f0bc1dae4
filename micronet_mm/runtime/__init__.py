"""Deployment runtimes with native MicroNet operators (OpenVINO: :mod:`.openvino`)."""
