"""Tests of the exchange_ews provider against the strict EWS fake."""
