#!/usr/bin/env nu
# Installs aws 1.2.0
def main [] { print "installing aws 1.2.0" }
