"""Home visits: assignment, itinerary, check-in and check-out."""
