"""The memory-lean STA for small FPGAs (the iCE40UP5K): one time-shared datapath per job."""
