"""builder: build C-extension eggs and wheels per production platform, test them where no
compiler is, and publish them for offline installs."""
__version__ = "0.1.0"
