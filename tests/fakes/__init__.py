"""Protocol-faithful fakes of provider services, written from their documentation."""
