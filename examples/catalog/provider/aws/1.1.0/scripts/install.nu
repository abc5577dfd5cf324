#!/usr/bin/env nu
# Installs aws 1.1.0
def main [] { print "installing aws 1.1.0" }
