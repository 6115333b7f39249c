"""variance-pipeline: an EOD market-data warehouse for options traders."""

__version__ = "0.1.0"
