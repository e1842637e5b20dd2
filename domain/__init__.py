"""The wallet's pure domain: money and currencies, countries, TigerBeetle ids, wallet types and
the error catalogue. It imports nothing from the project and nothing from Django (an
import-linter contract checks both), so every layer may use it."""
