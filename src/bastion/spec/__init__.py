"""bastion.spec"""
