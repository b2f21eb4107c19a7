"""Generated protobuf contracts of Clamor (package clamor.v1). Do not edit."""
