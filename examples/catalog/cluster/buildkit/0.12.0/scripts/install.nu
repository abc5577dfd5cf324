#!/usr/bin/env nu
# Installs buildkit 0.12.0
def main [] { print "installing buildkit 0.12.0" }
