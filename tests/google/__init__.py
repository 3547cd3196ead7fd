"""Tests of the google provider against the strict Google Calendar fake."""
